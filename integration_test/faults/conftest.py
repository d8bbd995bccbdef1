"""Fixtures for the fault-injection and hostile-input suites.

Like the end-to-end tests these run the real orchestrator (as ``segue serve``
subprocesses), real SDK workers and the real client SDK on real RabbitMQ and
PostgreSQL, isolated by a namespace and a database of their own. The database
fixtures (``database_url``, ``store``) come from ``integration_test/conftest.py``.

Some tests here restart RabbitMQ and PostgreSQL; :func:`services_left_running`
makes sure both run again when any test of this directory ends, whatever
happened in it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import aio_pika
import pytest

from segue.demo import demo_handlers
from segue.protocol.names import Names
from segue.protocol.topology import exchanges

from .services import ensure_services_running_sync

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "config" / "workflow_config.json"


@pytest.fixture(autouse=True)
def services_left_running(amqp_url: str, database_url: str, names: Names) -> Iterator[None]:
    """Start each test with RabbitMQ serving, and leave both services running after it.

    Other tests of the suite may leave RabbitMQ refusing channels or a service
    stopped, and the tests here restart both on purpose. This fixture depends
    on the test's database and namespace so that it ends before they are
    removed, which needs running servers.
    """
    ensure_services_running_sync(amqp_url)
    try:
        yield
    finally:
        ensure_services_running_sync(amqp_url)


@pytest.fixture
def names(amqp_url: str) -> Iterator[Names]:
    """A namespace of this test's own; its queues and exchanges are deleted afterwards.

    Every queue whose name starts with the namespace is deleted, also the ones a
    test declared for itself (taps on the updates exchange).
    """
    names = Names(f"t{uuid4().hex[:12]}")
    yield names
    asyncio.run(delete_namespace(amqp_url, names, extra_queues=demo_queue_names(names)))


def demo_queue_names(names: Names) -> list[str]:
    """The orchestrator's queues and the task queue of every demo handler in ``names``.

    The tests here run workflows of the demo handlers only, so these are all
    the queues an orchestrator or a demo worker declares.
    """
    fixed = [names.commands_queue, names.events_queue, names.dead_queue]
    return fixed + [names.task_queue(handler.queue) for handler in demo_handlers()]


async def delete_namespace(amqp_url: str, names: Names, extra_queues: list[str]) -> None:
    """Delete the namespace's exchanges and the given queues (missing ones are fine)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for name in [*extra_queues, tap_queue_name(names), task_tap_queue_name(names)]:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        for spec in exchanges(names):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(spec.name)


def tap_queue_name(names: Names) -> str:
    """The durable queue a test binds to the updates exchange to collect raw results
    (or every update)."""
    return f"{names.namespace}.test-result-tap"


def task_tap_queue_name(names: Names) -> str:
    """The durable queue a test binds to the tasks exchange to copy task messages."""
    return f"{names.namespace}.test-task-tap"
