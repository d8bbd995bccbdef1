"""Properties of ``decide`` over random event sequences, with random and real attempt ids."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import pairwise
from uuid import UUID

from engine_builders import JOB_ID, T0, step, workflow
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.engine.effects import Decision, NotifyResult, NotifyStatus
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
from segue.engine.state import Attempt, Job, new_attempt_id
from segue.engine.timers import next_wakeup
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.workflows.model import Workflow

MODE = {"name": "mode", "type": "string", "default": "full"}
FAST = {"when": {"var": "params.mode", "op": "==", "value": "fast"}, "goto": "report"}
FULL = workflow(
    step(
        "prepare",
        heartbeat_s=30,
        max_crashes=2,
        retry={"max_attempts": 3, "initial_delay_s": 5, "jitter": 0.5, "non_retryable": ["Fatal"]},
        next={"branches": [FAST], "default": "simulate"},
    ),
    step(
        "simulate",
        dispatch_timeout_s=20,
        timeout_s=100,
        heartbeat_s=45,
        on_failure="cleanup",
        retry={"max_attempts": 2, "initial_delay_s": 0},
        next="report",
    ),
    step("report", heartbeat_s=None),
    step("cleanup", retry={"max_attempts": 2, "initial_delay_s": 0}),
    timeout_s=600,
    parameters=[MODE],
)
TINY = workflow(
    step(
        "only",
        heartbeat_s=0.5,
        dispatch_timeout_s=1,
        timeout_s=1,
        max_crashes=3,
        retry={"max_attempts": 4, "initial_delay_s": 0.5, "backoff_factor": 3, "max_delay_s": 2},
    ),
    timeout_s=60,
    parameters=[MODE],
)
WORKFLOWS = [FULL, TINY]
WORKER_EVENTS = (StepStarted, StepProgressed, StepHeartbeat, StepSucceeded, StepFailed)
# Strategies are built once: building them per draw dominates the run time.
KIND_WEIGHTS = {"started": 3, "progress": 2, "heartbeat": 2, "succeeded": 3, "failed": 2}
KINDS = st.sampled_from(
    [
        kind
        for kind, n in {**KIND_WEIGHTS, "timer": 4, "cancel": 1, "submit": 1}.items()
        for _ in range(n)
    ]
)
WHICH_ATTEMPT = st.sampled_from(["current", "current", "current", "any", "random"])
UUIDS = st.uuids()
WORKERS = st.sampled_from(["w1", "w2", ""])
BOOLS = st.booleans()
FRACTIONS = st.sampled_from([0.0, 0.5, 1.0])
MESSAGES = st.sampled_from(["", "meshing"])
OUTPUTS = st.sampled_from([{}, {"grid": 1}])
ERROR_KINDS = st.sampled_from(["Boom", "Fatal"])
PAUSES = st.sampled_from([0, 0.25, 0.5, 1, 5, 20, 45, 120])


def _attempt_id(data: st.DataObject, job: Job) -> UUID:
    """Mostly the current attempt, sometimes an older one or one nobody knows."""
    ids = [attempt.attempt_id for attempt in job.attempts]
    which = data.draw(WHICH_ATTEMPT)
    if which == "current":
        return ids[-1]
    if which == "any":
        return data.draw(st.sampled_from(ids))
    return data.draw(UUIDS)


def _event(data: st.DataObject, job: Job) -> Event:
    """A random event about ``job``."""
    kind = data.draw(KINDS)
    worker = data.draw(WORKERS)
    match kind:
        case "started":
            return StepStarted(_attempt_id(data, job), worker, data.draw(BOOLS))
        case "progress":
            fraction = data.draw(FRACTIONS)
            message = data.draw(MESSAGES)
            return StepProgressed(_attempt_id(data, job), fraction, message, worker)
        case "heartbeat":
            return StepHeartbeat(_attempt_id(data, job), worker)
        case "succeeded":
            output = data.draw(OUTPUTS)
            return StepSucceeded(_attempt_id(data, job), output, worker)
        case "failed":
            error = ErrorInfo(kind=data.draw(ERROR_KINDS), message="x")
            return StepFailed(_attempt_id(data, job), error, data.draw(BOOLS), worker)
        case "cancel":
            return CancelRequested()
        case "submit":
            return JobSubmitted(JOB_ID, job.workflow, "h", {})
        case _:
            return TimerFired()


def _expected_number(previous: Attempt, attempt: Attempt) -> int:
    """The number an attempt must have, given the one before it."""
    if attempt.step != previous.step or previous.status is AttemptStatus.SUCCEEDED:
        return 1
    if previous.status is AttemptStatus.LOST:
        return previous.number  # a crash consumes no retry
    return previous.number + 1


def _check_attempt(attempt: Attempt, workflow: Workflow) -> None:
    """Each status has the timestamps that explain it."""
    assert 1 <= attempt.number <= workflow.step(attempt.step).retry.max_attempts
    match attempt.status:
        case AttemptStatus.SCHEDULED:
            assert attempt.due_at is not None
            assert attempt.dispatched_at is None
        case AttemptStatus.DISPATCHED:
            assert attempt.dispatched_at is not None
            assert attempt.started_at is None
        case AttemptStatus.RUNNING:
            assert attempt.started_at is not None
            assert attempt.last_seen_at is not None
        case _:
            assert attempt.finished_at is not None


def _check_invariants(job: Job) -> None:
    """What must hold for every job ``decide`` returns."""
    assert job.attempts
    unfinished = [i for i, a in enumerate(job.attempts) if not a.status.is_terminal]
    assert unfinished in ([], [len(job.attempts) - 1]), "one unfinished attempt, the newest"
    assert job.current_step == job.attempts[-1].step
    assert job.status.is_terminal == (not unfinished)
    assert job.status.is_terminal == (job.finished_at is not None)
    started = any(attempt.started_at is not None for attempt in job.attempts)
    if job.status is JobStatus.QUEUED:
        assert not started
    if job.status is JobStatus.RUNNING:
        assert started
    if job.status is JobStatus.SUCCEEDED:
        assert job.attempts[-1].status is AttemptStatus.SUCCEEDED
        assert job.current_step in job.outputs
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT):
        assert job.error is not None
    for index, attempt in enumerate(job.attempts):
        assert attempt.attempt_id == new_attempt_id(job.job_id, index + 1)
        _check_attempt(attempt, job.workflow)
    assert job.attempts[0].number == 1
    for previous, attempt in pairwise(job.attempts):
        assert attempt.number == _expected_number(previous, attempt)


def _without_liveness(job: Job) -> Job:
    """The job minus what a repeated report may refresh (when the worker was last seen)."""
    attempts = tuple(replace(attempt, last_seen_at=None) for attempt in job.attempts)
    return replace(job, attempts=attempts, updated_at=job.created_at)


def _check_repeat(job: Job, event: Event, now: datetime) -> None:
    """The same worker event again changes nothing and sends nothing."""
    again = decide(job, event, now)
    assert again.job == job
    assert again.effects == ()
    later = decide(job, event, now + timedelta(seconds=1))
    assert later.effects == ()
    assert later.job is not None
    assert _without_liveness(later.job) == _without_liveness(job)


def _check_step(job: Job, event: Event, decision: Decision, now: datetime) -> Job:
    """Checks of one decision; returns the new job."""
    assert decision.rejected is None
    assert all(record.type != "engine_error" for record in decision.records), decision.ignored
    json.dumps([record.data for record in decision.records])  # history rows are JSON
    new = decision.job
    assert new is not None
    _check_invariants(new)
    if job.status.is_terminal:
        assert new == job, "a finished job never changes"
        assert all(isinstance(effect, NotifyStatus) for effect in decision.effects)
    if decision.ignored is not None:
        assert new == job
    if isinstance(event, WORKER_EVENTS):
        _check_repeat(new, event, now)
    if isinstance(event, TimerFired):
        wakeup, before = next_wakeup(new), next_wakeup(job)
        assert wakeup is None or wakeup > now, "the wake-up must move forward"
        assert decision.ignored is None or before is None or before > now
    return new


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_event_sequences_keep_every_promise(data: st.DataObject) -> None:
    wf = data.draw(st.sampled_from(WORKFLOWS))
    params = data.draw(st.sampled_from([{}, {"mode": "fast"}]))
    now = T0
    decision = decide(None, JobSubmitted(JOB_ID, wf, "h", params), now)
    assert decision.job is not None
    job = decision.job
    _check_invariants(job)
    results = 0
    for _ in range(data.draw(st.integers(1, 40))):
        now += timedelta(seconds=data.draw(PAUSES))
        event = _event(data, job)
        decision = decide(job, event, now)
        results += sum(isinstance(effect, NotifyResult) for effect in decision.effects)
        job = _check_step(job, event, decision, now)
    assert results == (1 if job.status.is_terminal else 0), "exactly one result per finished job"


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_timers_alone_always_finish_a_job(data: st.DataObject) -> None:
    """With workers gone silent, the sweeper alone brings every job to an end."""
    decision = decide(None, JobSubmitted(JOB_ID, TINY, "h", {}), T0)
    job = decision.job
    assert job is not None
    now = T0
    for _ in range(200):
        if data.draw(st.booleans()):
            started = StepStarted(job.attempts[-1].attempt_id)
            job = _check_step(job, started, decide(job, started, now), now)
        wakeup = next_wakeup(job)
        if wakeup is None:
            break
        now = max(now, wakeup)
        job = _check_step(job, TimerFired(), decide(job, TimerFired(), now), now)
    assert job.status.is_terminal
