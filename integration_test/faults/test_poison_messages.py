"""Single messages that must be dead-lettered with a reason at once (not requeued
forever), and a malformed command that must not make a real job look failed.

- JSON nested deeper than Python's recursion limit (``RecursionError``).
- ``NaN``, ``Infinity`` and overflowing numbers such as ``1e400`` (PostgreSQL's
  ``jsonb`` refuses them).
- ``\\u0000`` in a string that would reach a ``text`` or ``jsonb`` column (a
  submission's ``reference``, a progress message, a step output).
- A lone surrogate (``\\ud800``), which cannot be encoded as UTF-8.
- A malformed cancel (``reason`` not a string) naming a running job: it is
  dead-lettered, and the job's followers hear nothing about it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import aio_pika
import pytest
from aio_pika.abc import DeliveryMode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.client import SegueClient
from segue.demo import demo_handlers
from segue.protocol.messages import JobStatus
from segue.protocol.names import Names
from segue.service.app import run_service
from segue.settings import Settings
from segue.store.repository import Store
from segue.worker import Worker

from .conftest import DEMO_CONFIG
from .plan import WORKFLOW, write_workflow_file
from .taps import drain_queue

SETTLE_WAIT_S = 5.0
NESTING = 5000
"""Deeper than Python's recursion limit (1000), far below the size limit."""


@dataclass(frozen=True)
class Context:
    """A running orchestrator with one real job whose first attempt waits for a worker."""

    amqp_url: str
    names: Names
    store: Store
    job_id: UUID
    attempt_id: UUID


Body = Callable[[Context], bytes]
Settled = Callable[[Context], Awaitable[bool]]


@pytest.fixture
async def context(
    amqp_url: str,
    names: Names,
    database_url: str,
    store: Store,
    sql_engine: AsyncEngine,
    tmp_path: Path,
) -> AsyncIterator[Context]:
    """An in-process orchestrator and a real job (no worker runs, so it stays dispatched)."""
    settings = Settings(
        amqp_url=amqp_url,
        database_url=database_url,
        namespace=names.namespace,
        workflow_config=write_workflow_file(DEMO_CONFIG, tmp_path / "workflows.json"),
        migrate_on_start=False,
        sweep_interval_s=0.2,
        http_host="127.0.0.1",
        http_port=0,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(run_service(settings, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with SegueClient(amqp_url, namespace=names.namespace) as client:
            job = await client.submit(WORKFLOW, {"step_seconds": 0.05})
            await job.accepted(timeout=30)
        attempt_id = await first_attempt(sql_engine, job.job_id)
        yield Context(amqp_url, names, store, job.job_id, attempt_id)
    finally:
        stop.set()
        await asyncio.wait_for(service, 60)


async def first_attempt(sql_engine: AsyncEngine, job_id: UUID) -> UUID:
    """The id of the job's first attempt."""
    query = text("SELECT attempt_id FROM step_attempts WHERE job_id = :job_id ORDER BY ordinal")
    async with sql_engine.connect() as connection:
        found = (await connection.execute(query, {"job_id": job_id})).scalars().first()
    assert isinstance(found, UUID), f"job {job_id} has no attempt"
    return found


async def publish(ctx: Context, queue: str, body: bytes) -> str:
    """Publish one raw message to ``queue``; returns its message id."""
    mid = f"poison-{uuid4().hex}"
    connection = await aio_pika.connect(ctx.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        message = aio_pika.Message(body, message_id=mid, delivery_mode=DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=queue)
    return mid


async def dead_lettered_within(ctx: Context, mid: str, seconds: float) -> bool:
    """Whether message ``mid`` reaches the dead-letter queue within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in await drain_queue(ctx.amqp_url, ctx.names.dead_queue):
            if message.message_id == mid:
                return True
        await asyncio.sleep(0.3)
    return False


def submission(params_json: str = "{}", extra: str = "") -> Body:
    """A submission body with raw JSON for its params (and extra raw fields)."""
    return lambda _: (
        f'{{"type": "submit_job", "job_id": "{uuid4()}", "workflow": "{WORKFLOW}", '
        f'"params": {params_json}{extra}}}'
    ).encode()


def real_attempt_event(kind: str, fields_json: str) -> Body:
    """A worker event about the real job's current attempt, with raw JSON fields."""
    return lambda ctx: (
        f'{{"type": "{kind}", "job_id": "{ctx.job_id}", "attempt_id": "{ctx.attempt_id}", '
        f'"worker_id": "poison-test", {fields_json}}}'
    ).encode()


POISON: dict[str, tuple[str, Body]] = {
    "deeply-nested-command": ("commands", lambda _: b"[" * NESTING + b"]" * NESTING),
    "deeply-nested-event": ("events", lambda _: b'{"a":' * NESTING + b"1" + b"}" * NESTING),
    "nan-parameter": ("commands", submission('{"co2_price_eur": NaN}')),
    "infinite-parameter": ("commands", submission('{"co2_price_eur": Infinity}')),
    "overflowing-parameter": ("commands", submission('{"co2_price_eur": 1e400}')),
    "nul-in-reference": ("commands", submission(extra=', "reference": "a\\u0000b"')),
    "surrogate-in-parameter-name": ("commands", submission('{"\\ud800": 1}')),
    "nul-in-progress-message": (
        "events",
        real_attempt_event("step_progress", '"fraction": 0.5, "message": "a\\u0000b"'),
    ),
    "nul-in-step-output": (
        "events",
        real_attempt_event("step_succeeded", '"output": {"note": "a\\u0000b"}'),
    ),
}


@pytest.mark.parametrize("case", sorted(POISON))
@pytest.mark.timeout(120)
async def test_a_poison_message_is_dead_lettered_instead_of_requeued_forever(
    context: Context, case: str
) -> None:
    target, body = POISON[case]
    queue = context.names.commands_queue if target == "commands" else context.names.events_queue
    mid = await publish(context, queue, body(context))
    assert await dead_lettered_within(context, mid, SETTLE_WAIT_S), (
        f"{case}: not dead-lettered within {SETTLE_WAIT_S:g} s (requeued over and over)"
    )


@pytest.mark.timeout(120)
async def test_a_malformed_command_naming_a_running_job_does_not_announce_it_failed(
    context: Context,
) -> None:
    async with SegueClient(context.amqp_url, namespace=context.names.namespace) as client:
        job = await client.follow(context.job_id)
        body = f'{{"type": "cancel_job", "job_id": "{context.job_id}", "reason": 5}}'.encode()
        mid = await publish(context, context.names.commands_queue, body)
        assert await dead_lettered_within(context, mid, SETTLE_WAIT_S)
        worker = Worker(
            handlers=demo_handlers(), amqp_url=context.amqp_url, namespace=context.names.namespace
        )
        async with worker:
            result = await job.result(timeout=60)
    assert result.status is JobStatus.SUCCEEDED, f"the client was told {result}"
