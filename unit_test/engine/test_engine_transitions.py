"""The transition table: (state, event) -> new status, effects, records, refusal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import pytest
from engine_builders import JOB_ID, Run, at, current, step, stops, types, workflow

from segue.engine.effects import StopAttempt
from segue.engine.events import (
    CancelRequested,
    Event,
    JobSubmitted,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    TimerFired,
)
from segue.engine.machine import decide
from segue.engine.state import Job
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus

WF = workflow(
    step(
        "a",
        next="b",
        heartbeat_s=60,
        max_crashes=2,
        retry={"max_attempts": 3, "initial_delay_s": 10, "jitter": 0, "non_retryable": ["Fatal"]},
    ),
    step("b"),
)
UNKNOWN = UUID("00000000-0000-4000-8000-0000000000ff")
BOOM = ErrorInfo(kind="Boom", message="it broke")
FATAL = ErrorInfo(kind="Fatal", message="never again")


def _state(name: str) -> Job:
    """A job of ``WF`` in the named state, reached through real events."""
    run = Run.submitted(WF)
    if name != "dispatched":
        run.apply(StepStarted(run.attempt_id, worker_id="w1"), 1)
    if name == "scheduled":
        run.apply(StepFailed(run.attempt_id, BOOM), 2)
    if name in ("step2", "succeeded"):
        run.apply(StepSucceeded(run.attempt_id, {"x": 1}), 2)
    if name == "succeeded":
        run.apply(StepSucceeded(run.attempt_id, {"y": 2}), 3)
    if name == "cancelled":
        run.apply(CancelRequested("stop"), 2)
    return run.live


def _cur(job: Job) -> UUID:
    return current(job).attempt_id


def _first(job: Job) -> UUID:
    return job.attempts[0].attempt_id


EVENTS: dict[str, Callable[[Job], Event]] = {
    "started": lambda j: StepStarted(_cur(j), worker_id="w1"),
    "started_redelivered_w2": lambda j: StepStarted(_cur(j), worker_id="w2", redelivered=True),
    "started_w2": lambda j: StepStarted(_cur(j), worker_id="w2"),
    "heartbeat_w2": lambda j: StepHeartbeat(_cur(j), worker_id="w2"),
    "succeeded_w2": lambda j: StepSucceeded(_cur(j), {"x": 1}, worker_id="w2"),
    "progress": lambda j: StepProgressed(_cur(j), 0.5, "half"),
    "progress_first": lambda j: StepProgressed(_first(j), 0.5, "half"),
    "heartbeat": lambda j: StepHeartbeat(_cur(j)),
    "succeeded": lambda j: StepSucceeded(_cur(j), {"x": 1}),
    "succeeded_first": lambda j: StepSucceeded(_first(j), {"x": 1}),
    "succeeded_unknown": lambda j: StepSucceeded(UNKNOWN, {"x": 1}),
    "failed": lambda j: StepFailed(_cur(j), BOOM),
    "failed_fatal": lambda j: StepFailed(_cur(j), FATAL),
    "failed_not_retryable": lambda j: StepFailed(_cur(j), BOOM, retryable=False),
    "cancel": lambda j: CancelRequested("stop"),
    "timer": lambda j: TimerFired(),
    "submit": lambda j: JobSubmitted(JOB_ID, WF, "h", {}),
}


@dataclass(frozen=True)
class Row:
    """One expected transition (attempt = status of the job's newest attempt)."""

    state: str
    event: str
    job: JobStatus
    attempt: AttemptStatus
    effects: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    ignored: str | None = None


Q, R, S, F, C = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)
A = AttemptStatus
STARTED = "step_started"
ROWS = [
    Row("dispatched", "started", R, A.RUNNING, ("NotifyStatus",), (STARTED,)),
    Row("dispatched", "progress", R, A.RUNNING, ("NotifyStatus", "NotifyProgress"),
        (STARTED, "step_progress")),
    Row("dispatched", "heartbeat", R, A.RUNNING, ("NotifyStatus",), (STARTED,)),
    Row("dispatched", "succeeded", R, A.DISPATCHED, ("NotifyStatus", "DispatchStep"),
        (STARTED, "step_succeeded", "step_dispatched")),
    Row("dispatched", "failed", R, A.SCHEDULED, ("NotifyStatus",),
        (STARTED, "step_retry_scheduled")),
    Row("dispatched", "failed_fatal", F, A.FAILED, ("NotifyResult",),
        (STARTED, "step_failed", "job_failed")),
    Row("dispatched", "cancel", C, A.CANCELLED, ("StopAttempt", "NotifyResult"),
        ("job_cancelled",)),
    Row("dispatched", "timer", Q, A.DISPATCHED, ignored="no deadline due"),
    Row("dispatched", "submit", Q, A.DISPATCHED, ("NotifyStatus",), ("submission_ignored",),
        "duplicate submission"),
    Row("running", "started", R, A.RUNNING, (), ("event_ignored",), "attempt already running"),
    Row("running", "started_redelivered_w2", R, A.RUNNING, ("StopAttempt",),
        ("step_redelivered",)),
    Row("running", "started_w2", R, A.RUNNING, ("StopAttempt",), ("event_ignored",),
        "attempt runs on worker 'w1'"),
    Row("running", "heartbeat_w2", R, A.RUNNING, (),
        ignored="attempt runs on worker 'w1'"),
    Row("running", "succeeded_w2", R, A.RUNNING, (), ("event_ignored",),
        "attempt runs on worker 'w1'"),
    Row("running", "progress", R, A.RUNNING, ("NotifyProgress",), ("step_progress",)),
    Row("running", "heartbeat", R, A.RUNNING),
    Row("running", "succeeded", R, A.DISPATCHED, ("NotifyStatus", "DispatchStep"),
        ("step_succeeded", "step_dispatched")),
    Row("running", "failed", R, A.SCHEDULED, (), ("step_retry_scheduled",)),
    Row("running", "failed_not_retryable", F, A.FAILED, ("NotifyResult",),
        ("step_failed", "job_failed")),
    Row("running", "cancel", C, A.CANCELLED, ("StopAttempt", "NotifyResult"), ("job_cancelled",)),
    Row("running", "timer", R, A.RUNNING, ignored="no deadline due"),
    Row("scheduled", "heartbeat", R, A.SCHEDULED, ("StopAttempt",),
        ignored="attempt not dispatched yet"),
    Row("scheduled", "succeeded_first", R, A.SCHEDULED, (), ("event_ignored",),
        "stale attempt (already failed)"),
    Row("scheduled", "cancel", C, A.CANCELLED, ("NotifyResult",), ("job_cancelled",)),
    Row("scheduled", "timer", R, A.SCHEDULED, ignored="no deadline due"),
    Row("step2", "started", R, A.RUNNING, (), (STARTED,)),
    Row("step2", "progress_first", R, A.DISPATCHED, ("StopAttempt",),
        ignored="stale attempt (already succeeded)"),
    Row("succeeded", "progress", S, A.SUCCEEDED, ("StopAttempt",), ignored="job is succeeded"),
    Row("succeeded", "heartbeat", S, A.SUCCEEDED, ("StopAttempt",), ignored="job is succeeded"),
    Row("succeeded", "started", S, A.SUCCEEDED, ("StopAttempt",), ("event_ignored",),
        "job is succeeded"),
    Row("succeeded", "failed", S, A.SUCCEEDED, (), ("event_ignored",), "job is succeeded"),
    Row("succeeded", "cancel", S, A.SUCCEEDED, (), ("cancel_ignored",), "job is succeeded"),
    Row("succeeded", "timer", S, A.SUCCEEDED, ignored="job is succeeded"),
    Row("succeeded", "submit", S, A.SUCCEEDED, ("NotifyStatus",), ("submission_ignored",),
        "duplicate submission"),
    Row("cancelled", "succeeded", C, A.CANCELLED, (), ("event_ignored",), "job is cancelled"),
    Row("cancelled", "heartbeat", C, A.CANCELLED, ("StopAttempt",), ignored="job is cancelled"),
    Row("cancelled", "cancel", C, A.CANCELLED, (), ("cancel_ignored",), "job is cancelled"),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[f"{row.state}-{row.event}" for row in ROWS])
def test_transition(row: Row) -> None:
    job = _state(row.state)
    event = EVENTS[row.event](job)
    decision = decide(job, event, at(5))
    assert decision.rejected is None
    assert decision.ignored == row.ignored
    assert decision.job is not None
    assert decision.job.status is row.job
    assert current(decision.job).status is row.attempt
    assert types(decision.effects) == list(row.effects)
    assert types(decision.records) == list(row.records)
    if row.ignored is not None:
        assert decision.job == job, "an ignored event must not change the job"
        for stop in stops(decision):  # a report of work the worker must not do
            assert isinstance(event, StepStarted | StepProgressed | StepHeartbeat)
            reason = f"not yours to run: {row.ignored}"
            assert stop == StopAttempt(JOB_ID, event.attempt_id, reason, event.worker_id or None)
    else:
        assert decision.job.updated_at == at(5)


def test_worker_event_of_an_attempt_the_job_never_had_is_rejected() -> None:
    job = _state("dispatched")
    decision = decide(job, EVENTS["succeeded_unknown"](job), at(5))
    assert decision.rejected is not None
    assert decision.rejected.startswith("unknown attempt")
    assert decision.job == job
    assert decision.records == ()
    assert decision.effects == ()


def test_submission_of_an_unknown_workflow_is_rejected_unless_the_job_exists() -> None:
    unknown = JobSubmitted(JOB_ID, None, "", {}, workflow_name="nope")
    decision = decide(None, unknown, at(1))
    assert decision.rejected == "unknown workflow 'nope'"
    assert decision.rejection_kind == "unknown_workflow"
    assert decision.job is None
    job = _state("dispatched")
    duplicate = decide(job, unknown, at(5))
    assert duplicate.ignored == "duplicate submission"
    assert duplicate.job == job


def test_worker_event_for_unknown_job_is_ignored() -> None:
    decision = decide(None, StepSucceeded(UNKNOWN, {}), at(1))
    assert decision.job is None
    assert decision.ignored == "unknown job"
    assert decision.effects == ()


def test_cancel_and_timer_for_unknown_job_are_ignored() -> None:
    assert decide(None, CancelRequested(), at(1)).ignored == "unknown job"
    assert decide(None, TimerFired(), at(1)).ignored == "unknown job"
