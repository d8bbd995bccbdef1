"""Fixtures for the SDK tests: real RabbitMQ, a namespace per test.

The broker is the ``amqp_url`` fixture of ``integration_test/conftest.py``
(``SEGUE_TEST_AMQP_URL``, default the local RabbitMQ); when it is unreachable
the tests FAIL with a message saying how to fix that, never skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from segue.protocol.names import Names

from .sdk_harness import Harness

STEP_QUEUES = ("sdk_async", "sdk_blocking", "sdk_other")


@pytest.fixture
async def harness(amqp_url: str) -> AsyncIterator[Harness]:
    """The test's hand-played orchestrator on a fresh namespace, deleted afterwards."""
    names = Names(f"t{uuid4().hex[:12]}")
    harness = await Harness.open(amqp_url, names, STEP_QUEUES)
    try:
        yield harness
    finally:
        await harness.delete_namespace()
