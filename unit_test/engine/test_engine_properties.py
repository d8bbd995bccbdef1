"""Properties of ``decide`` over random event sequences, with random and real attempt ids.

They run on a plain pipeline, a one-step workflow and a workflow with a map step,
a parallel step and a repeated step (several live attempts at once).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
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
from segue.engine.timers import find_step, next_wakeup
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
CASES = {"name": "cases", "type": "list", "items": {"type": "integer"}, "default": [1, 2, 3]}
FANOUT = workflow(
    step(
        "each",
        map={"over": "params.cases", "max_concurrency": 2, "tolerate_failures": 1},
        heartbeat_s=30,
        timeout_s=100,
        max_crashes=2,
        retry={"max_attempts": 2, "initial_delay_s": 5, "non_retryable": ["Fatal"]},
        on_failure="cleanup",
        next="fan",
    ),
    {"name": "fan", "parallel": {"branches": ["left", "right"]}, "next": "again"},
    step("left", dispatch_timeout_s=20, retry={"max_attempts": 2, "initial_delay_s": 0}),
    step("right", heartbeat_s=10, timeout_s=50),
    step(
        "again",
        input={"grid": "outputs.fan.left"},
        repeat={"until": {"exists": "outputs.again.grid"}, "max_iterations": 3},
        heartbeat_s=None,
        on_failure="cleanup",
    ),
    step("cleanup"),
    timeout_s=900,
    parameters=[CASES],
)
WORKFLOWS: list[tuple[Workflow, list[dict[str, Any]]]] = [
    (FULL, [{}, {"mode": "fast"}]),
    (TINY, [{}]),
    (FANOUT, [{}, {"cases": []}, {"cases": [1, 2, 3, 4, 5]}]),
]
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
    """Mostly a live attempt, sometimes any (older) one or one nobody knows."""
    ids = [attempt.attempt_id for attempt in job.attempts] or [data.draw(UUIDS)]
    live = [attempt.attempt_id for attempt in job.live_attempts] or ids[-1:]
    which = data.draw(WHICH_ATTEMPT)
    if which == "current":
        return data.draw(st.sampled_from(live))
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


def _check_numbers(job: Job) -> None:
    """Attempts of one slot (run, step, iteration, item) are numbered 1, 2, ...: a lost
    attempt's replacement keeps its number; only a failure for good, or success, ends one."""
    newest: dict[tuple[int, str, int, int | None], Attempt] = {}
    for attempt in job.attempts:
        previous = newest.get(attempt.slot)
        if previous is None:
            assert attempt.number == 1
        else:
            assert not previous.is_live, "one live attempt per slot"
            assert previous.status is not AttemptStatus.SUCCEEDED
            lost = previous.status is AttemptStatus.LOST
            assert attempt.number == previous.number + (0 if lost else 1)
        newest[attempt.slot] = attempt


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


def _check_live(job: Job) -> None:
    """Live attempts belong to the current step (its items, or its branches), at most
    ``max_concurrency`` items at a time; a job is live exactly while some attempt is."""
    live = job.live_attempts
    assert job.status.is_terminal == (not live)
    current = find_step(job, job.current_step or "")
    assert current is not None
    for attempt in live:
        branches = current.parallel.branches if current.parallel is not None else []
        assert attempt.step == current.name or attempt.step in branches
        assert attempt.run == job.run
    if current.map is not None:
        assert len(live) <= current.map.max_concurrency


def _check_invariants(job: Job) -> None:
    """What must hold for every job ``decide`` returns."""
    _check_live(job)
    assert job.status.is_terminal == (job.finished_at is not None)
    started = any(attempt.started_at is not None for attempt in job.attempts)
    if job.status is JobStatus.QUEUED:
        assert not started
    if job.status is JobStatus.RUNNING:
        assert started
    if job.status is JobStatus.SUCCEEDED:
        assert job.current_step in job.outputs
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT):
        assert job.error is not None
    for index, attempt in enumerate(job.attempts):
        assert attempt.attempt_id == new_attempt_id(job.job_id, index + 1)
        _check_attempt(attempt, job.workflow)
    _check_numbers(job)


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
    if decision.rejected is not None:  # only an event of an attempt the job never had
        assert isinstance(event, WORKER_EVENTS)
        assert job.attempt(event.attempt_id) is None
        assert decision.job == job
        assert (decision.records, decision.effects) == ((), ())
        return job
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


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_event_sequences_keep_every_promise(data: st.DataObject) -> None:
    wf, choices = data.draw(st.sampled_from(WORKFLOWS))
    params = data.draw(st.sampled_from(choices))
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
    wf = data.draw(st.sampled_from([TINY, FANOUT]))
    decision = decide(None, JobSubmitted(JOB_ID, wf, "h", {}), T0)
    job = decision.job
    assert job is not None
    now = T0
    for _ in range(200):
        if data.draw(st.booleans()) and job.live_attempts:
            started = StepStarted(data.draw(st.sampled_from(job.live_attempts)).attempt_id)
            job = _check_step(job, started, decide(job, started, now), now)
        wakeup = next_wakeup(job)
        if wakeup is None:
            break
        now = max(now, wakeup)
        job = _check_step(job, TimerFired(), decide(job, TimerFired(), now), now)
    assert job.status.is_terminal
