"""Fixtures for end-to-end tests: the real orchestrator, real SDK workers and the
real client SDK, on real RabbitMQ and PostgreSQL, isolated per test by a
namespace of their own and a database of their own.

The broker comes from ``SEGUE_TEST_AMQP_URL`` (default the local RabbitMQ);
when it is unreachable the tests FAIL with a message saying how to fix that.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import aio_pika
import pytest

from segue.client import SegueClient
from segue.demo import demo_handlers
from segue.protocol.names import Names
from segue.protocol.topology import exchanges
from segue.service.app import run_service
from segue.settings import Settings
from segue.worker import Worker
from segue.workflows.loader import load_workflows

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "config" / "workflow_config.json"


@pytest.fixture
def names(amqp_url: str) -> Iterator[Names]:
    """A namespace of this test's own; its queues and exchanges are deleted afterwards."""
    names = Names(f"t{uuid4().hex[:12]}")
    yield names
    asyncio.run(delete_namespace(amqp_url, names))


async def delete_namespace(amqp_url: str, names: Names) -> None:
    """Delete every queue and exchange of ``names`` (the demo task queues included)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        queues = [names.commands_queue, names.events_queue, names.dead_queue]
        queues += [names.task_queue(q) for q in load_workflows(DEMO_CONFIG).queues()]
        for name in queues:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        for spec in exchanges(names):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(spec.name)


@pytest.fixture
def settings(amqp_url: str, database_url: str, names: Names) -> Settings:
    """Settings of an orchestrator for this test (fast timers)."""
    return Settings(
        amqp_url=amqp_url,
        database_url=database_url,
        namespace=names.namespace,
        workflow_config=DEMO_CONFIG,
        migrate_on_start=False,
        sweep_interval_s=0.2,
        relay_interval_s=0.5,
        relay_grace_s=1.0,
        http_host="127.0.0.1",
        http_port=free_port(),
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Settings]:
    """The orchestrator, running in this event loop until the test ends."""
    async with running_service(settings):
        yield settings


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, reload: asyncio.Event | None = None
) -> AsyncIterator[Settings]:
    """Run the orchestrator in this event loop while the block runs."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(settings, stop, ready, reload=reload))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED, timeout=30)
    if task.done():
        task.result()
    assert ready.is_set(), "the orchestrator did not become ready in 30 s"
    try:
        yield settings
    finally:
        stop.set()
        await asyncio.wait_for(task, 40)


@pytest.fixture
async def worker(amqp_url: str, names: Names, service: Settings) -> AsyncIterator[Worker]:
    """Demo workers serving every demo queue, four tasks at a time."""
    demo_worker = demo_worker_for(amqp_url, names, concurrency=4)
    task = asyncio.create_task(demo_worker.run())
    yield demo_worker
    demo_worker.stop()
    await asyncio.wait_for(task, 40)


def demo_worker_for(amqp_url: str, names: Names, concurrency: int) -> Worker:
    """An SDK worker serving every demo queue in namespace ``names``.

    Progress goes out every 50 ms, so the tests' steps of a fraction of a
    second report some (the first report waits one interval).
    """
    return Worker(
        handlers=demo_handlers(),
        amqp_url=amqp_url,
        namespace=names.namespace,
        concurrency=concurrency,
        progress_interval_s=0.05,
    )


@pytest.fixture
def make_worker(amqp_url: str, names: Names) -> Callable[[int], Worker]:
    """Build demo workers for this test's namespace: ``make_worker(concurrency)``."""
    return lambda concurrency: demo_worker_for(amqp_url, names, concurrency)


@pytest.fixture
async def client(amqp_url: str, names: Names) -> AsyncIterator[SegueClient]:
    """A client SDK connected to this test's namespace."""
    async with SegueClient(amqp_url, namespace=names.namespace, request_timeout_s=20) as c:
        yield c
