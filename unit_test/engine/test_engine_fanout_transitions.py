"""The transition table of map and parallel steps: several live attempts at once.

(state, event) -> job status, statuses of the live attempts, effects, records, refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import pytest
from engine_builders import JOB_ID, Run, at, live_ids, step, types, workflow

from segue.engine.events import (
    CancelRequested,
    Event,
    JobSubmitted,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    TimerFired,
)
from segue.engine.machine import decide
from segue.engine.state import Job
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus

CASES = {"name": "cases", "type": "list", "items": {"type": "integer"}, "default": [1, 2, 3]}
WF = workflow(
    step(
        "each",
        map={"over": "params.cases", "max_concurrency": 2},
        retry={"max_attempts": 2, "initial_delay_s": 10, "jitter": 0, "non_retryable": ["Fatal"]},
        next="fan",
    ),
    {"name": "fan", "parallel": {"branches": ["left", "right"]}},
    step("left"),
    step("right"),
    parameters=[CASES],
)
BOOM = ErrorInfo(kind="Boom", message="it broke")
FATAL = ErrorInfo(kind="Fatal", message="never again")


def _state(name: str) -> Job:
    """A job of ``WF`` in the named state, reached through real events."""
    run = Run.submitted(WF)
    if name == "items_running":
        for attempt_id in live_ids(run.job):
            run.apply(StepStarted(attempt_id, "w"), 1)
    if name in ("last_item", "branches", "one_branch"):
        run.apply(StepSucceeded(live_ids(run.job)[0], {}), 1)
        run.apply(StepSucceeded(live_ids(run.job)[0], {}), 1)
    if name in ("branches", "one_branch"):
        run.apply(StepSucceeded(live_ids(run.job)[0], {}), 2)
    if name == "one_branch":
        run.apply(StepSucceeded(live_ids(run.job)[0], {"left": 1}), 3)
    return run.live


def _first_live(job: Job) -> UUID:
    return live_ids(job)[0]


EVENTS: dict[str, Callable[[Job], Event]] = {
    "first_ok": lambda j: StepSucceeded(_first_live(j), {"x": 1}),
    "first_failed": lambda j: StepFailed(_first_live(j), BOOM),
    "first_fatal": lambda j: StepFailed(_first_live(j), FATAL),
    "last_progress": lambda j: StepProgressed(live_ids(j)[-1], 0.5, "half"),
    "oldest_ok": lambda j: StepSucceeded(j.attempts[0].attempt_id, {"x": 1}),
    "cancel": lambda j: CancelRequested("stop"),
    "timer": lambda j: TimerFired(),
    "submit": lambda j: JobSubmitted(JOB_ID, WF, "h", {}),
}


@dataclass(frozen=True)
class Row:
    """One expected transition (live = statuses of the live attempts afterwards)."""

    state: str
    event: str
    job: JobStatus
    live: tuple[AttemptStatus, ...]
    effects: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    ignored: str | None = None


Q, R, C, F = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED
D, RUN, SCH = AttemptStatus.DISPATCHED, AttemptStatus.RUNNING, AttemptStatus.SCHEDULED
STARTED = "step_started"
ROWS = [
    Row("items", "first_ok", R, (D, D), ("NotifyStatus", "DispatchStep"),
        (STARTED, "map_item_succeeded", "step_dispatched")),
    Row("items", "first_failed", R, (D, SCH), ("NotifyStatus",),
        (STARTED, "step_retry_scheduled")),
    Row("items", "first_fatal", F, (), ("StopAttempt", "NotifyResult"),
        (STARTED, "map_item_failed", "step_failed", "job_failed")),
    Row("items", "last_progress", R, (D, RUN), ("NotifyStatus", "NotifyProgress"),
        (STARTED, "step_progress")),
    Row("items", "cancel", C, (), ("StopAttempt", "StopAttempt", "NotifyResult"),
        ("job_cancelled",)),
    Row("items", "timer", Q, (D, D), ignored="no deadline due"),
    Row("items", "submit", Q, (D, D), ("NotifyStatus",), ("submission_ignored",),
        "duplicate submission"),
    Row("items_running", "first_ok", R, (RUN, D), ("DispatchStep",),
        ("map_item_succeeded", "step_dispatched")),
    Row("items_running", "first_fatal", F, (), ("StopAttempt", "NotifyResult"),
        ("map_item_failed", "step_failed", "job_failed")),
    Row("last_item", "oldest_ok", R, (D,), (), ("event_ignored",),
        "stale attempt (already succeeded)"),
    Row("last_item", "first_ok", R, (D, D), ("NotifyStatus", "DispatchStep", "DispatchStep"),
        (STARTED, "map_item_succeeded", "step_succeeded", "step_dispatched", "step_dispatched")),
    Row("branches", "first_ok", R, (D,), (), (STARTED, "branch_succeeded")),
    Row("branches", "first_fatal", F, (), ("StopAttempt", "NotifyResult"),
        (STARTED, "branch_failed", "step_failed", "job_failed")),
    Row("branches", "cancel", C, (), ("StopAttempt", "StopAttempt", "NotifyResult"),
        ("job_cancelled",)),
    Row("one_branch", "first_ok", JobStatus.SUCCEEDED, (), ("NotifyResult",),
        (STARTED, "branch_succeeded", "step_succeeded", "job_succeeded")),
    Row("one_branch", "first_failed", F, (), ("NotifyResult",),
        (STARTED, "branch_failed", "step_failed", "job_failed")),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[f"{row.state}-{row.event}" for row in ROWS])
def test_transition(row: Row) -> None:
    job = _state(row.state)
    decision = decide(job, EVENTS[row.event](job), at(5))
    assert decision.rejected is None
    assert decision.ignored == row.ignored
    assert decision.job is not None
    assert decision.job.status is row.job
    assert tuple(a.status for a in decision.job.live_attempts) == row.live
    assert types(decision.effects) == list(row.effects)
    assert types(decision.records) == list(row.records)
    if row.ignored is not None:
        assert decision.job == job, "an ignored event must not change the job"
