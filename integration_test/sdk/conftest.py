"""Fixtures for the SDK tests: real RabbitMQ, a namespace per test.

The broker comes from ``SEGUE_TEST_AMQP_URL`` (default the local RabbitMQ);
when it is unreachable the tests FAIL with a message saying how to fix that,
never skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from uuid import uuid4

import aio_pika
import pytest

from segue.protocol.names import Names

from .sdk_harness import Harness

AMQP_URL_ENV = "SEGUE_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
STEP_QUEUES = ("sdk_async", "sdk_blocking", "sdk_other")


@pytest.fixture
async def sdk_amqp_url() -> str:
    """The test broker's URL, checked reachable (fails the test otherwise)."""
    url = os.environ.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at {url} ({exc!r}). Start it (`rabbitmq-server "
            f"-detached`, or `docker run -d -p 5672:5672 rabbitmq:3.13`) or set {AMQP_URL_ENV}.",
            pytrace=False,
        )
    await connection.close()
    return url


@pytest.fixture
async def harness(sdk_amqp_url: str) -> AsyncIterator[Harness]:
    """The test's hand-played orchestrator on a fresh namespace, deleted afterwards."""
    names = Names(f"t{uuid4().hex[:12]}")
    harness = await Harness.open(sdk_amqp_url, names, STEP_QUEUES)
    try:
        yield harness
    finally:
        await harness.delete_namespace()
