"""Properties of ``decide`` over random event sequences, with random and real attempt ids.

They run on a plain pipeline, a one-step workflow and a workflow with a map step,
a parallel step and a repeated step (several live attempts at once); jobs with and
without a secret (attempt tokens) and an owner, some cancelled before submission.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from engine_builders import JOB_ID, T0, step, workflow
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.engine.effects import (
    Decision,
    NotifyProgress,
    NotifyResult,
    NotifyStatus,
    StopAttempt,
)
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
from segue.engine.progress import kept_through
from segue.engine.state import Attempt, Job, attempt_token, new_attempt_id, token_digest
from segue.engine.timers import find_step, next_wakeup
from segue.protocol import kinds
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
BUSY_EVENTS = (StepStarted, StepProgressed, StepHeartbeat)
"""Reports of a worker still running the attempt: answered with a stop when it must not."""
NOTICES = (NotifyStatus, NotifyProgress, NotifyResult)
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
SECRETS = st.sampled_from([None, "s3cret"])
OWNERS = st.sampled_from([None, "alice"])
REQUESTERS = st.sampled_from(["alice", "bob", None])
ADMINS = st.sampled_from([False, False, True])
EARLY_CANCELS = st.sampled_from([None, None, None, None, "cancelled before it was submitted"])
TOKENS = st.sampled_from(["right", "right", "right", "wrong"])
LAGS = st.sampled_from([None, None, 0, 0.5, 30])
"""How far the orchestrator's worker events lag behind a timer (None: no horizon)."""


def _submission(data: st.DataObject, wf: Workflow, params: dict[str, Any]) -> JobSubmitted:
    """A submission of ``wf``, with or without a secret, an owner and an early cancel."""
    return JobSubmitted(
        JOB_ID,
        wf,
        "h",
        params,
        secret=data.draw(SECRETS),
        owner=data.draw(OWNERS),
        cancelled=data.draw(EARLY_CANCELS),
    )


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


def _token(data: st.DataObject, job: Job, attempt_id: UUID) -> str | None:
    """Mostly the attempt's token (None for a job without secret), sometimes a forged one."""
    return attempt_token(job, attempt_id) if data.draw(TOKENS) == "right" else "forged"


def _event(data: st.DataObject, job: Job, now: datetime) -> Event:
    """A random event about ``job`` at ``now``."""
    kind = data.draw(KINDS)
    worker = data.draw(WORKERS)
    if kind in KIND_WEIGHTS:
        attempt_id = _attempt_id(data, job)
        token = _token(data, job, attempt_id)
    match kind:
        case "started":
            return StepStarted(attempt_id, worker, data.draw(BOOLS), token)
        case "progress":
            fraction = data.draw(FRACTIONS)
            message = data.draw(MESSAGES)
            return StepProgressed(attempt_id, fraction, message, worker, token)
        case "heartbeat":
            return StepHeartbeat(attempt_id, worker, token)
        case "succeeded":
            return StepSucceeded(attempt_id, data.draw(OUTPUTS), worker, token)
        case "failed":
            error = ErrorInfo(kind=data.draw(ERROR_KINDS), message="x")
            return StepFailed(attempt_id, error, data.draw(BOOLS), worker, token)
        case "cancel":
            return CancelRequested(requester=data.draw(REQUESTERS), admin=data.draw(ADMINS))
        case "submit":
            return JobSubmitted(JOB_ID, job.workflow, "h", {})
        case _:
            lag = data.draw(LAGS)
            return TimerFired(horizon=None if lag is None else now - timedelta(seconds=lag))


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
    ``max_concurrency`` items at a time; a job is live exactly while some attempt is.
    Only a job cancelled before its submission never entered a step."""
    live = job.live_attempts
    assert job.status.is_terminal == (not live)
    if job.current_step is None:
        assert job.status is JobStatus.CANCELLED
        assert job.attempts == ()
        return
    current = find_step(job, job.current_step)
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
        assert attempt.attempt_id == new_attempt_id(job.job_id, index + 1, job.secret)
        assert attempt.progress_reports >= 0
        _check_attempt(attempt, job.workflow)
    _check_numbers(job)


def _without_liveness(job: Job) -> Job:
    """The job minus what a repeated report may refresh (when the worker was last seen)."""
    attempts = tuple(replace(attempt, last_seen_at=None) for attempt in job.attempts)
    return replace(job, attempts=attempts, updated_at=job.created_at)


def _check_reply(job: Job, event: Event, decision: Decision) -> None:
    """An ignored report of work the worker must not do (started, progress, heartbeat)
    is answered with a stop for that worker alone; an ignored result, a repeated
    ``started`` of a running attempt, or a heartbeat or progress of a worker that does
    not hold the running attempt (it may have overtaken its own redelivered
    ``started``), with nothing."""
    if not isinstance(event, WORKER_EVENTS) or decision.ignored is None:
        return
    overtaking = isinstance(event, StepHeartbeat | StepProgressed) and decision.ignored.startswith(
        "attempt runs on worker"
    )
    if (
        isinstance(event, BUSY_EVENTS)
        and decision.ignored != "attempt already running"
        and not overtaking
    ):
        token = attempt_token(job, event.attempt_id)
        reason = f"not yours to run: {decision.ignored}"
        digest = None if token is None else token_digest(token)
        stop = StopAttempt(job.job_id, event.attempt_id, reason, event.worker_id or None, digest)
        assert decision.effects == (stop,)
    else:
        assert decision.effects == ()


def _check_stops(decision: Decision, new: Job) -> None:
    """Every stop proves it comes from the orchestrator (the token's digest, for a job
    with a secret), and none reaches the worker that holds a running attempt."""
    for stop in decision.effects:
        if not isinstance(stop, StopAttempt):
            continue
        token = attempt_token(new, stop.attempt_id)
        assert stop.token_digest == (None if token is None else token_digest(token))
        attempt = new.attempt(stop.attempt_id)
        assert attempt is not None
        if attempt.status is AttemptStatus.RUNNING:
            assert stop.worker_id is not None, "a stop for whoever runs it must end it"
            assert stop.worker_id != attempt.worker_id, "the holder must not be stopped"


def _check_notices(last_seq: int, decision: Decision, new: Job) -> None:
    """Each notice carries the job's next update sequence number, the job keeps the
    last one; a duplicate submission re-announces the latest one."""
    seqs = [effect.seq for effect in decision.effects if isinstance(effect, NOTICES)]
    if decision.ignored == "duplicate submission":
        assert seqs == [last_seq]
        assert new.update_seq == last_seq
    else:
        assert seqs == list(range(last_seq + 1, new.update_seq + 1))


def _refusal(job: Job, event: Event) -> str | None:
    """Why ``event`` must be refused, if it must: a cancel by neither the job's owner nor
    an admin, a report about an attempt the job never had, or without its token."""
    if isinstance(event, CancelRequested):
        allowed = job.owner is None or event.admin or event.requester == job.owner
        return None if allowed else kinds.FORBIDDEN
    if isinstance(event, WORKER_EVENTS):
        if job.attempt(event.attempt_id) is None:
            return "unknown attempt"
        token = attempt_token(job, event.attempt_id)
        return kinds.WRONG_TOKEN if token is not None and event.token != token else None
    return None


def _check_refused(job: Job, event: Event, decision: Decision) -> bool:
    """Whether the event was refused, as it must be exactly when :func:`_refusal` says;
    a refusal changes nothing and sends nothing."""
    refusal = _refusal(job, event)
    assert (decision.rejected is None) == (refusal is None), decision.rejected
    if decision.rejected is None:
        return False
    if refusal == "unknown attempt":
        assert decision.rejected.startswith("unknown attempt")
    else:
        assert decision.rejection_kind == refusal
    assert decision.job == job
    assert (decision.records, decision.effects) == ((), ())
    return True


def _check_repeat(job: Job, event: Event, now: datetime) -> None:
    """The same worker event again changes nothing; it sends nothing but the stop that
    answers a report of work its worker must not do."""
    for moment in (now, now + timedelta(seconds=1)):
        again = decide(job, event, moment)
        assert again.job is not None
        assert _without_liveness(again.job) == _without_liveness(job)
        if moment == now:
            assert again.job == job
        if again.ignored is None:
            assert again.effects == ()
        _check_reply(job, event, again)


def _check_step(job: Job, event: Event, decision: Decision, now: datetime) -> Job:
    """Checks of one decision; returns the new job."""
    if _check_refused(job, event, decision):
        return job
    assert not decision.engine_error, decision.ignored
    assert all(record.type != "engine_error" for record in decision.records), decision.ignored
    json.dumps([record.data for record in decision.records])  # history rows are JSON
    new = decision.job
    assert new is not None
    _check_invariants(new)
    _check_notices(job.update_seq, decision, new)
    _check_stops(decision, new)
    _check_reply(job, event, decision)
    if job.status.is_terminal:
        assert new == job, "a finished job never changes"
        if isinstance(event, BUSY_EVENTS):  # answered with a stop (see _check_reply)
            assert decision.ignored == f"job is {job.status}"
        elif not isinstance(event, JobSubmitted):
            assert decision.effects == ()
    if decision.ignored is not None:
        assert new == job
    if isinstance(event, WORKER_EVENTS):
        _check_repeat(new, event, now)
    if isinstance(event, TimerFired):
        _check_timer(job, event, decision, now)
    return new


def _statuses(job: Job) -> tuple[JobStatus, tuple[AttemptStatus, ...]]:
    """The status of the job and of each of its attempts."""
    return job.status, tuple(attempt.status for attempt in job.attempts)


def _check_timer(job: Job, event: TimerFired, decision: Decision, now: datetime) -> None:
    """A timer handles what is due by its horizon, no more: the wake-up moves past the
    horizon, and the job's statuses become those a timer at the horizon would give."""
    horizon = now if event.horizon is None else min(event.horizon, now)
    assert decision.job is not None
    wakeup, before = next_wakeup(decision.job), next_wakeup(job)
    assert wakeup is None or wakeup > horizon, "the wake-up must move past the horizon"
    assert decision.ignored is None or before is None or before > horizon
    at_horizon = decide(job, TimerFired(), horizon).job
    assert at_horizon is not None
    assert _statuses(decision.job) == _statuses(at_horizon)


def _check_progress_history(job: Job, recorded: Counter[str]) -> None:
    """Each attempt counts its progress reports; the history holds the ones the
    thinning rule keeps (:mod:`segue.engine.progress`)."""
    for attempt in job.attempts:
        assert kept_through(attempt.progress_reports) == recorded[str(attempt.attempt_id)]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_event_sequences_keep_every_promise(data: st.DataObject) -> None:
    wf, choices = data.draw(st.sampled_from(WORKFLOWS))
    params = data.draw(st.sampled_from(choices))
    now = T0
    decision = decide(None, _submission(data, wf, params), now)
    assert decision.job is not None
    job = decision.job
    _check_invariants(job)
    _check_notices(0, decision, job)
    results = sum(isinstance(effect, NotifyResult) for effect in decision.effects)
    recorded: Counter[str] = Counter()
    for _ in range(data.draw(st.integers(1, 40))):
        now += timedelta(seconds=data.draw(PAUSES))
        event = _event(data, job, now)
        decision = decide(job, event, now)
        results += sum(isinstance(effect, NotifyResult) for effect in decision.effects)
        job = _check_step(job, event, decision, now)
        recorded.update(r.data["attempt_id"] for r in decision.records if r.type == "step_progress")
        _check_progress_history(job, recorded)
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
