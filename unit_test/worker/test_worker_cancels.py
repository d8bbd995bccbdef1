"""Which cancels a worker obeys, and the cancels it remembers for tasks still to come."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import pytest
from structlog.testing import capture_logs

from fakes import FakeSink
from segue.protocol.messages import CancelAttempt, StepStarted, StepSucceeded, StepTask
from segue.protocol.tokens import token_digest
from segue.worker import StepContext, step_handler
from segue.worker.attempt import AttemptSettings
from segue.worker.attempts import RunningAttempts
from segue.worker.cancels import RecentCancels

TOKEN = "a1b2c3d4" * 4


def make_task(token: str | None = TOKEN, attempt_id: UUID | None = None) -> StepTask:
    return StepTask(
        job_id=uuid4(),
        workflow="energy_plan",
        step="optimise",
        queue="optimise",
        attempt=1,
        attempt_id=attempt_id or uuid4(),
        token=token,
    )


def cancel_of(task: StepTask, **fields: Any) -> CancelAttempt:
    """The orchestrator's cancel of ``task`` (for whoever holds it), with ``fields`` changed."""
    fields.setdefault("token_digest", None if task.token is None else token_digest(task.token))
    fields.setdefault("reason", "job cancelled")
    return CancelAttempt(job_id=task.job_id, attempt_id=task.attempt_id, **fields)


class Running:
    """One attempt running in a worker ``w1``: its handler waits until released."""

    def __init__(self, task: StepTask) -> None:
        self.task = task
        self.sink = FakeSink()
        self.attempts = RunningAttempts(self.sink, AttemptSettings("w1"))
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.done = asyncio.Event()

    async def start(self) -> None:
        @step_handler("optimise")
        async def wait(ctx: StepContext) -> dict[str, Any]:
            self.entered.set()
            await self.release.wait()
            return {"finished": True}

        attempt = await self.attempts.start(self.task, wait, redelivered=False)
        assert attempt is not None
        self.attempts.launch(attempt, self.done.set)
        await asyncio.wait_for(self.entered.wait(), 2)

    async def outcome_after(self, command: CancelAttempt) -> str:
        """Hear ``command``, then let the handler finish: ``cancelled`` or ``succeeded``."""
        self.attempts.cancel(command)
        await asyncio.sleep(0.01)
        self.release.set()
        await asyncio.wait_for(self.done.wait(), 2)
        return "succeeded" if self.sink.of_type(StepSucceeded) else "cancelled"


@pytest.mark.parametrize(
    ("worker_id", "expected"),
    [(None, "cancelled"), ("w1", "cancelled"), ("w2", "succeeded")],
)
async def test_a_cancel_for_another_worker_is_ignored(worker_id: str | None, expected: str) -> None:
    running = Running(make_task())
    await running.start()
    assert await running.outcome_after(cancel_of(running.task, worker_id=worker_id)) == expected


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        (token_digest(TOKEN), "cancelled"),
        (None, "succeeded"),
        (token_digest("another token"), "succeeded"),
        (TOKEN, "succeeded"),  # the token itself is not its digest
    ],
)
async def test_a_cancel_without_the_token_digest_is_ignored(
    digest: str | None, expected: str
) -> None:
    running = Running(make_task())
    await running.start()
    with capture_logs() as logs:
        outcome = await running.outcome_after(cancel_of(running.task, token_digest=digest))
    assert outcome == expected
    if expected == "succeeded":
        assert "cancel_without_token_ignored" in {entry["event"] for entry in logs}


async def test_a_task_without_a_token_obeys_any_cancel_of_its_attempt() -> None:
    running = Running(make_task(token=None))
    await running.start()
    assert await running.outcome_after(cancel_of(running.task, token_digest="whatever")) == (
        "cancelled"
    )


async def test_a_cancel_heard_before_the_task_is_remembered_for_it() -> None:
    attempts = RunningAttempts(FakeSink(), AttemptSettings("w1"))
    task, other_workers, forged = make_task(), make_task(), make_task()
    attempts.cancel(cancel_of(task))
    attempts.cancel(cancel_of(other_workers, worker_id="w2"))
    attempts.cancel(cancel_of(forged, token_digest=None))
    assert attempts.cancelled_before(task) == "job cancelled"
    assert attempts.cancelled_before(other_workers) is None
    assert attempts.cancelled_before(forged) is None
    assert attempts.cancelled_before(make_task()) is None


async def test_the_answer_to_an_earlier_start_does_not_stop_the_current_one() -> None:
    # The worker's first ``started`` reached the orchestrator but its confirm was
    # lost; the task came back and this start became the holder. The stop that
    # answered the first start arrives now: it names the first start's run.
    running = Running(make_task())
    await running.start()
    current = running.sink.of_type(StepStarted)[0].run_id
    assert current is not None
    stale = cancel_of(running.task, worker_id="w1", run_id=uuid4().hex)
    assert await running.outcome_after(stale) == "succeeded"
    assert running.attempts.cancelled_before(running.task) is None, "not remembered"


async def test_the_answer_to_the_current_start_stops_it() -> None:
    running = Running(make_task())
    await running.start()
    run_id = running.sink.of_type(StepStarted)[0].run_id
    answer = cancel_of(running.task, worker_id="w1", run_id=run_id)
    assert await running.outcome_after(answer) == "cancelled"


def test_recent_cancels_forget_the_oldest_beyond_their_capacity() -> None:
    cancels = RecentCancels(capacity=3)
    tasks = [make_task() for _ in range(5)]
    for task in tasks:
        cancels.remember(cancel_of(task))
    assert len(cancels) == 3
    assert [cancels.find(task) is not None for task in tasks] == [False, False, True, True, True]


def test_recent_cancels_forget_those_older_than_their_age_limit() -> None:
    now = [0.0]
    cancels = RecentCancels(max_age_s=60.0, clock=lambda: now[0])
    old, recent = make_task(), make_task()
    cancels.remember(cancel_of(old))
    now[0] = 30.0
    cancels.remember(cancel_of(recent))
    now[0] = 61.0
    assert cancels.find(old) is None
    assert cancels.find(recent) is not None
    assert len(cancels) == 1


def test_a_cancel_heard_again_is_kept_as_the_newest() -> None:
    now = [0.0]
    cancels = RecentCancels(capacity=2, max_age_s=60.0, clock=lambda: now[0])
    first, second, third = make_task(), make_task(), make_task()
    cancels.remember(cancel_of(first))
    cancels.remember(cancel_of(second))
    now[0] = 50.0
    cancels.remember(cancel_of(first))
    cancels.remember(cancel_of(third))
    now[0] = 100.0
    assert cancels.find(second) is None, "the oldest, beyond the capacity"
    assert cancels.find(first) is not None, "heard again at 50 s: not too old at 100 s"
    assert cancels.find(third) is not None


def test_a_forged_cancel_heard_later_does_not_hide_the_orchestrators() -> None:
    cancels = RecentCancels()
    task = make_task()
    cancels.remember(cancel_of(task))
    cancels.remember(cancel_of(task, token_digest=None, reason="forged"))
    assert cancels.find(task) is not None
