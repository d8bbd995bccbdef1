"""The promises about cancellation, duplicate tasks, backlogs and update order, on the
real orchestrator, real SDK workers and real RabbitMQ + PostgreSQL.

Each step of the ``hold`` workflow records in :class:`Runs` when its handler
started and whether it ran to the end, so a test can tell "never ran" from
"ran and was ignored".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID, uuid4

import aio_pika
import pytest

from segue.client import SegueClient
from segue.protocol.codec import UPDATE_ADAPTER, decode, encode
from segue.protocol.messages import (
    AttemptStatus,
    CancelJob,
    JobFinished,
    JobStatus,
    JobView,
    JsonObject,
    SubmitJob,
)
from segue.protocol.names import Names
from segue.settings import Settings
from segue.store.repository import Store
from segue.worker import StepContext, Worker, step_handler

from .conftest import running_service

HEARTBEAT_S = 2.0
HOLD = {
    "format_version": 1,
    "workflows": [
        {
            "name": "hold",
            "parameters": [{"name": "seconds", "type": "float", "default": 1.0}],
            "steps": [{"name": "hold", "queue": "hold", "heartbeat_s": HEARTBEAT_S}],
        },
        {
            "name": "orphan",
            "steps": [{"name": "orphan", "queue": "orphan", "dispatch_timeout_s": 3}],
        },
    ],
}


@dataclass
class Runs:
    """What the ``hold`` handlers of every worker did, by job."""

    started: dict[UUID, list[str]] = field(default_factory=dict)
    finished: dict[UUID, list[str]] = field(default_factory=dict)

    def handler(self, worker_name: str) -> object:
        @step_handler("hold")
        async def hold(ctx: StepContext) -> JsonObject:
            self.started.setdefault(ctx.job_id, []).append(worker_name)
            deadline = asyncio.get_running_loop().time() + float(ctx.params["seconds"])
            while asyncio.get_running_loop().time() < deadline:
                if ctx.cancelled:
                    return {"cancelled": True}
                await asyncio.sleep(0.05)
            self.finished.setdefault(ctx.job_id, []).append(worker_name)
            return {"held_by": worker_name}

        return hold


@pytest.fixture
def hold_settings(settings: Settings, tmp_path: Path) -> Settings:
    config = tmp_path / "hold.json"
    config.write_text(json.dumps(HOLD), encoding="utf-8")
    return settings.model_copy(update={"workflow_config": config})


@pytest.fixture
def hold_queue_cleanup(amqp_url: str, names: Names) -> Iterator[None]:
    yield
    for queue in ("hold", "orphan"):
        asyncio.run(_delete_queue(amqp_url, names.task_queue(queue)))


async def _delete_queue(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(queue)


@contextlib.asynccontextmanager
async def running_worker(
    amqp_url: str, names: Names, runs: Runs, worker_name: str
) -> AsyncIterator[Worker]:
    worker = Worker(
        handlers=[runs.handler(worker_name)],  # type: ignore[list-item]
        amqp_url=amqp_url,
        namespace=names.namespace,
        concurrency=1,
        worker_id=worker_name,
        heartbeat_interval_s=HEARTBEAT_S / 4,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 40)


async def wait_for_status(
    client: SegueClient, job_id: UUID, wanted: set[JobStatus], timeout_s: float = 30
) -> JobView:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        view = await client.get(job_id)
        if view is not None and view.status in wanted:
            return view
        assert loop.time() < deadline, f"job {job_id} is {view and view.status}, not {wanted}"
        await asyncio.sleep(0.1)


async def publish_commands(amqp_url: str, names: Names, *bodies: object) -> None:
    """Publish commands as a client would, one after the other, in this order."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for body in bodies:
            message = aio_pika.Message(encode(body), user_id="guest")  # type: ignore[arg-type]
            await channel.default_exchange.publish(message, routing_key=names.commands_queue)


# --- 1. cancel stops work that has not started ------------------------------------------


async def test_a_task_cancelled_while_queued_is_dropped_unrun(
    hold_settings: Settings, names: Names, hold_queue_cleanup: None
) -> None:
    runs = Runs()
    async with (
        running_service(hold_settings),
        running_worker(hold_settings.amqp_url, names, runs, "w1"),
        SegueClient(hold_settings.amqp_url, namespace=names.namespace) as client,
    ):
        busy = await client.submit("hold", {"seconds": 2.0})
        await wait_for_status(client, busy.job_id, {JobStatus.RUNNING})
        queued = await client.submit("hold", {"seconds": 0.5})
        await asyncio.sleep(0.3)
        await client.cancel(queued.job_id)
        await wait_for_status(client, queued.job_id, {JobStatus.CANCELLED})

        assert (await busy.result(timeout=30)).status is JobStatus.SUCCEEDED
        await asyncio.sleep(1.0)  # the worker is free: it takes the cancelled task now

        assert queued.job_id not in runs.started, "the cancelled task must never run"
        view = await client.get(queued.job_id)
        assert view is not None
        assert [a.status for a in view.attempts] == [AttemptStatus.CANCELLED]


async def test_a_worker_that_starts_a_cancelled_task_is_stopped_at_once(
    hold_settings: Settings, names: Names, hold_queue_cleanup: None
) -> None:
    runs = Runs()
    async with (
        running_service(hold_settings),
        SegueClient(hold_settings.amqp_url, namespace=names.namespace) as client,
    ):
        job = await client.submit("hold", {"seconds": 20.0})
        await asyncio.sleep(0.3)
        await client.cancel(job.job_id)
        await wait_for_status(client, job.job_id, {JobStatus.CANCELLED})
        # This worker did not exist when the cancel went out: it takes the task,
        # and the orchestrator answers its ``started`` with a stop.
        async with running_worker(hold_settings.amqp_url, names, runs, "late"):
            for _ in range(100):
                if job.job_id in runs.started:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2.0)
        view = await client.get(job.job_id)

    assert runs.started.get(job.job_id) == ["late"]
    assert job.job_id not in runs.finished, "the stop must end the handler, not 20 s of work"
    assert view is not None
    assert view.status is JobStatus.CANCELLED
    ignored = [e for e in view.history if e.type == "event_ignored"]
    assert ignored
    assert ignored[0].data["worker_id"] == "late"


# --- 2. a cancel that overtakes its submission -----------------------------------------


async def test_a_cancel_that_overtakes_its_submission_ends_the_job_unrun(
    hold_settings: Settings, names: Names, hold_queue_cleanup: None
) -> None:
    runs = Runs()
    job_ids = [uuid4() for _ in range(10)]
    async with (
        running_service(hold_settings),
        running_worker(hold_settings.amqp_url, names, runs, "w1"),
        SegueClient(hold_settings.amqp_url, namespace=names.namespace) as client,
    ):
        for job_id in job_ids:
            await publish_commands(
                hold_settings.amqp_url,
                names,
                CancelJob(job_id=job_id, reason="changed my mind"),
                SubmitJob(job_id=job_id, workflow="hold", params={"seconds": 0.2}),
            )
        views = [await wait_for_status(client, job_id, {JobStatus.CANCELLED}) for job_id in job_ids]
        await asyncio.sleep(0.5)

    assert runs.started == {}
    for view in views:
        assert view.attempts == []
        assert [e.type for e in view.history] == ["job_submitted", "job_cancelled"]
        assert view.error is not None
        assert view.error.message == "changed my mind"


# --- 3. one task, one runner ------------------------------------------------------------


async def test_a_task_delivered_twice_is_run_by_one_worker_only(
    hold_settings: Settings, names: Names, hold_queue_cleanup: None
) -> None:
    runs = Runs()
    amqp_url = hold_settings.amqp_url
    async with (
        running_service(hold_settings),
        SegueClient(amqp_url, namespace=names.namespace) as client,
    ):
        job = await client.submit("hold", {"seconds": 2.0})
        await duplicate_the_queued_task(amqp_url, names.task_queue("hold"))
        async with (
            running_worker(amqp_url, names, runs, "w1"),
            running_worker(amqp_url, names, runs, "w2"),
        ):
            result = await job.result(timeout=30)
            await asyncio.sleep(0.5)
        view = await client.get(job.job_id)

    assert result.status is JobStatus.SUCCEEDED
    assert sorted(runs.started[job.job_id]) == ["w1", "w2"], "both copies were taken"
    assert len(runs.finished[job.job_id]) == 1, "only the holder ran the step to its end"
    assert view is not None
    (attempt,) = view.attempts
    assert attempt.worker_id == runs.finished[job.job_id][0]
    assert [e.type for e in view.history].count("step_succeeded") == 1
    # The other copy's ``started`` was refused; or, should a busy worker have held
    # that copy past its slot wait and handed it back (the broker then marks it
    # redelivered), the other worker took the attempt over and the first was stopped.
    fenced = [e for e in view.history if e.type == "event_ignored"]
    handed_over = [e for e in view.history if e.type == "step_redelivered"]
    assert fenced or handed_over, [e.type for e in view.history]
    if fenced:
        assert fenced[0].data["worker_id"] != attempt.worker_id
        assert "runs on worker" in fenced[0].data["reason"]
    else:
        assert handed_over[0].data["previous_worker_id"] != attempt.worker_id


async def duplicate_the_queued_task(amqp_url: str, queue: str) -> None:
    """Take the one task from ``queue`` and put it back twice (as a relay would
    after a crash between the broker's confirm and the outbox delete)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        task_queue = await channel.declare_queue(queue, passive=True)
        message = None
        for _ in range(100):
            message = await task_queue.get(no_ack=False, fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.05)
        assert message is not None, "the task never reached its queue"
        for _ in range(2):
            copy = aio_pika.Message(
                message.body, message_id=message.message_id, priority=message.priority
            )
            await channel.default_exchange.publish(copy, routing_key=queue)
        await message.ack()


# --- 4. a backlog never looks like a crash ---------------------------------------------


async def test_a_backlog_of_heartbeats_after_an_orchestrator_outage_loses_no_worker(
    hold_settings: Settings, names: Names, hold_queue_cleanup: None
) -> None:
    runs = Runs()
    amqp_url = hold_settings.amqp_url
    async with (
        running_worker(amqp_url, names, runs, "w1"),
        SegueClient(amqp_url, namespace=names.namespace) as client,
    ):
        async with running_service(hold_settings):
            job = await client.submit("hold", {"seconds": 9.0})
            await wait_for_status(client, job.job_id, {JobStatus.RUNNING})
        # The orchestrator is away for twice the heartbeat window; the worker's
        # heartbeats pile up in the events queue meanwhile.
        await asyncio.sleep(2 * HEARTBEAT_S + 1)
        async with running_service(hold_settings):
            result = await job.result(timeout=30)
            view = await client.get(job.job_id)

    assert result.status is JobStatus.SUCCEEDED
    assert view is not None
    assert [(a.status, a.worker_id) for a in view.attempts] == [(AttemptStatus.SUCCEEDED, "w1")]
    assert "step_lost" not in [e.type for e in view.history]
    assert runs.started[job.job_id] == ["w1"]


# --- 6. every dispatched task has a deadline ------------------------------------------


async def test_a_task_no_queue_takes_is_kept_and_its_job_fails_at_the_dispatch_deadline(
    hold_settings: Settings, names: Names, hold_queue_cleanup: None
) -> None:
    amqp_url = hold_settings.amqp_url
    async with (
        running_service(hold_settings),
        SegueClient(amqp_url, namespace=names.namespace) as client,
    ):
        await _delete_queue(amqp_url, names.task_queue("orphan"))  # deleted by someone
        job = await client.submit("orphan", {})
        result = await job.result(timeout=30)
        store = await Store.connect(hold_settings.database_url, pool_size=1)
        try:
            async with store.claim_outbox() as claim:
                kept = [row.message for row in claim.rows]
        finally:
            await store.close()

    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error.kind == "dispatch_timeout"
    tasks = [m.routing_key for m in kept if m.exchange == names.tasks_exchange]
    assert tasks == ["orphan"], "the unroutable task stays in the outbox (not silently dropped)"


# --- 9. updates in order ----------------------------------------------------------------


async def test_every_update_of_a_job_carries_a_higher_sequence_number(
    hold_settings: Settings, names: Names, hold_queue_cleanup: None
) -> None:
    runs = Runs()
    amqp_url = hold_settings.amqp_url
    connection = await aio_pika.connect(amqp_url)
    async with connection, running_service(hold_settings):
        channel = await connection.channel()
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(names.updates_exchange, routing_key="#")
        async with (
            running_worker(amqp_url, names, runs, "w1"),
            SegueClient(amqp_url, namespace=names.namespace) as client,
        ):
            job = await client.submit("hold", {"seconds": 1.0})
            await job.result(timeout=30)
        await asyncio.sleep(0.5)
        seqs: list[tuple[int, str]] = []
        while (message := await tap.get(no_ack=True, fail=False)) is not None:
            update = decode(UPDATE_ADAPTER, message.body)
            if update.job_id == job.job_id and update.seq is not None:
                seqs.append((update.seq, update.type))

    assert [seq for seq, _ in seqs] == sorted({seq for seq, _ in seqs})
    assert seqs[-1][1] == JobFinished.model_fields["type"].default
    assert len(seqs) >= 3  # queued, running, result
