"""What every report a worker sends about an attempt carries: the task's token and
its send time (the orchestrator refuses a report without the token, and judges
deadlines by the send time)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

from fakes import FakePublisher, FakeSink
from segue.broker.publisher import ConfirmedPublisher
from segue.protocol.codec import EVENT_ADAPTER, decode
from segue.protocol.messages import (
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    StepTask,
)
from segue.worker import StepContext, step_handler
from segue.worker.attempt import AttemptSettings
from segue.worker.attempts import RunningAttempts, TaskIds
from segue.worker.reporter import EventReporter

TOKEN = "0123456789abcdef" * 2


def make_task(queue: str) -> StepTask:
    return StepTask(
        job_id=uuid4(),
        workflow="energy_plan",
        step=queue,
        queue=queue,
        attempt=1,
        attempt_id=uuid4(),
        token=TOKEN,
    )


@step_handler("busy")
async def busy(ctx: StepContext) -> dict[str, Any]:
    """Long enough for heartbeats and a progress report."""
    for part in range(1, 11):
        ctx.progress(part / 10, f"part {part}")
        await asyncio.sleep(0.01)
    return {"ok": True}


@step_handler("boom")
def boom(ctx: StepContext) -> None:
    raise RuntimeError("boom")


async def test_every_report_carries_the_task_token_and_its_send_time() -> None:
    sink = FakeSink()
    settings = AttemptSettings("w1", heartbeat_interval_s=0.02, progress_interval_s=0.02)
    attempts = RunningAttempts(sink, settings)
    for handler in (busy, boom):
        attempt = await attempts.start(make_task(handler.queue), handler, redelivered=False)
        assert attempt is not None
        await attempt.run()
    task = make_task("broken")
    await attempts.refuse(TaskIds(task.job_id, task.attempt_id, task.token), "invalid step task")

    kinds = {type(event) for event in sink.events}
    assert kinds == {StepStarted, StepHeartbeat, StepProgressed, StepSucceeded, StepFailed}
    assert {event.token for event in sink.events} == {TOKEN}
    assert all(event.sent_at is not None for event in sink.events)
    assert {event.worker_id for event in sink.events} == {"w1"}


async def test_a_task_without_a_token_is_reported_without_one() -> None:
    sink = FakeSink()
    attempts = RunningAttempts(sink, AttemptSettings("w1"))
    task = make_task("busy").model_copy(update={"token": None})
    attempt = await attempts.start(task, busy, redelivered=False)
    assert attempt is not None
    await attempt.run()
    assert [event.token for event in sink.events] == [None, None]


async def test_the_reporter_stamps_an_event_built_without_a_send_time() -> None:
    publisher = FakePublisher()
    reporter = EventReporter(cast(ConfirmedPublisher, publisher), "t.events-in", "t.events")
    at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    ids: dict[str, Any] = {"job_id": uuid4(), "attempt_id": uuid4(), "token": TOKEN}
    before = datetime.now(UTC)
    await reporter.send(StepHeartbeat(**ids))
    await reporter.send_once(StepHeartbeat(**ids, sent_at=at))
    await reporter.send_or_raise(StepHeartbeat(**ids))

    sent = [decode(EVENT_ADAPTER, message.body) for message in publisher.published]
    stamps = [event.sent_at for event in sent]
    assert stamps[1] == at, "a send time already set is kept"
    for stamp in (stamps[0], stamps[2]):
        assert stamp is not None
        assert before <= stamp <= datetime.now(UTC)
