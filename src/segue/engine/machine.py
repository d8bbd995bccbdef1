"""The job state machine: ``decide(job, event, now) -> Decision``.

Like Temporal's workflow instance, ``decide`` is a ``match`` on the event with
one small ``_apply_<kind>`` function per kind. It does no I/O, reads no clock
and uses no randomness, and it never raises: a refused submission comes back as
``Decision(rejected=...)`` and a stale or duplicate event as
``Decision(ignored=...)``.

Choices the design leaves open, made here:

- Worker events are fenced by ``attempt_id``: only an unfinished,
  dispatched-or-running attempt of the job accepts them. Several may be live
  at once (the items of a map step, the branches of a parallel step: see
  :mod:`segue.engine.flow`); every live attempt belongs to the current step.
  Ignored events leave one ``event_ignored`` record, except heartbeats and
  progress (too noisy).
- Any report of a worker about a ``dispatched`` attempt (progress, heartbeat,
  a result before ``started``) starts it implicitly: ``step_started`` is
  recorded with ``event`` naming the report.
- ``NotifyStatus`` is emitted whenever a live job's (status, current step)
  changes: on submission, on the first start, and when the next step starts.
  A job ends with exactly one ``NotifyResult`` and no NotifyStatus.
- Progress of a map item is announced for the map step as a whole: finished
  items plus the fractions of running ones, over all items.
- A finished job keeps ``current_step`` = the step it ended in.
- ``on_failure`` works like ``except``: the failure is stored in
  ``outputs["_failure"]`` (so that step and every later one sees it in its
  inputs, also on retries) and the job's outcome is that of the path it takes.
- A repeated progress report (same fraction and message) only refreshes
  ``last_seen_at``; it is neither recorded nor announced again. Every other
  report is announced; the history records a thinned, bounded subset that
  keeps the shape of the whole run (:mod:`segue.engine.progress`).
- Whenever the orchestrator ends a dispatched or running attempt (cancel, any
  timeout, lost worker, a map or parallel step failing, the job ending) it
  emits one ``StopAttempt`` for it; a worker that picks up the task later is
  fenced anyway.
- A worker crash (heartbeat lost, task redelivered to another worker) uses no
  retry: the replacement attempt keeps the lost attempt's number. Crashes are
  counted per step (per ``step[item]`` of a map); ``max_crashes`` of them fail
  the job with a diagnosis, whatever ``on_failure`` says (poison quarantine).
- ``TimerFired`` handles every due deadline of :func:`~segue.engine.timers.deadlines`
  in order (the job timeout first, then each live attempt's), judged at the
  event's ``horizon`` (how far the orchestrator has heard from workers);
  afterwards nothing is due any more, so :func:`~segue.engine.timers.next_wakeup`
  has moved past it. Worker events that arrive after a deadline passed but
  before the sweeper acted are applied normally.
- A worker that reports ``started``, progress or a heartbeat for work it must
  not do (an attempt that ended, of a job that ended, or one another worker
  holds) is answered with a ``StopAttempt`` for it alone. Reports about a
  running attempt are accepted only from the worker holding it (fencing by
  worker), and, for jobs with a secret, only with the attempt's token.
- Cancel and rerun are allowed to the job's owner and admins only (a job
  without an owner is open to all). A cancel that arrived before its
  submission (``JobSubmitted.cancelled``) ends the new job cancelled at once.
- Each notice to followers carries the job's next update sequence number.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, replace
from datetime import datetime

from segue.engine.draft import Draft, attempt_data
from segue.engine.effects import Decision, NotifyProgress, NotifyStatus, Record, StopAttempt
from segue.engine.events import (
    CancelRequested,
    Event,
    JobSubmitted,
    RerunRequested,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    TimerFired,
)
from segue.engine.fanout import map_fraction
from segue.engine.flow import FAILURE_KEY, attempt_failed, attempt_succeeded, enter_step
from segue.engine.inputs import map_items
from segue.engine.progress import keeps_report
from segue.engine.state import Attempt, Job, attempt_token
from segue.engine.timers import Deadline, DeadlineKind, due_deadline, find_step, later
from segue.engine.transitions import (
    abort,
    abort_live,
    count_crash,
    end_job,
    lose,
    quarantine,
    release,
    settle,
    start,
    stop,
)
from segue.protocol import kinds
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus, JsonObject
from segue.workflows.model import Workflow
from segue.workflows.parameters import ParameterError, resolve_params

WorkerEvent = StepStarted | StepProgressed | StepHeartbeat | StepSucceeded | StepFailed


def decide(job: Job | None, event: Event, now: datetime) -> Decision:
    """Apply ``event`` to ``job`` (None: no such job yet) at time ``now``.

    Never raises. Should a bug make a transition fail anyway, the job is left
    as it was and the event is recorded as ``engine_error`` (a submission is
    rejected), so the consumer goes on and the history explains what happened.
    """
    try:
        return _apply(job, event, now)
    except Exception as exc:  # last resort: one bad event must not stop a consumer
        return _engine_error(job, event, exc, now)


def _apply(job: Job | None, event: Event, now: datetime) -> Decision:
    """Route the event to the function that applies its kind."""
    match event:
        case JobSubmitted():
            return _apply_submitted(job, event, now)
        case CancelRequested():
            return _apply_cancel(job, event, now)
        case RerunRequested():
            return _apply_rerun(job, event, now)
        case TimerFired():
            return _apply_timer(job, event, now)
        case StepStarted() | StepProgressed() | StepHeartbeat() | StepSucceeded() | StepFailed():
            return _apply_worker_event(job, event, now)
        case _:
            return Decision(job=job, ignored=f"unknown event {type(event).__name__}")


# --- client commands ---------------------------------------------------------------------


def _apply_submitted(job: Job | None, event: JobSubmitted, now: datetime) -> Decision:
    """Create the job and start its first step; a known job id is a duplicate."""
    if job is not None:
        reason = "duplicate submission"
        record = Record("submission_ignored", {"reason": reason, "status": str(job.status)})
        # The same state again: it keeps the latest sequence number, and changes nothing.
        notify = NotifyStatus(job.job_id, job.status, job.current_step, seq=job.update_seq)
        return Decision(job=job, effects=(notify,), records=(record,), ignored=reason)
    workflow = event.workflow
    if workflow is None:
        reason = f"unknown workflow {event.workflow_name!r}"
        return Decision(rejected=reason, rejection_kind=kinds.UNKNOWN_WORKFLOW)
    try:
        params = resolve_params(workflow, event.params)
    except ParameterError as exc:
        return Decision(rejected=str(exc))
    draft = Draft(job=_new_job(event, workflow, params, now), now=now, before=None)
    draft.record(
        "job_submitted",
        workflow=workflow.name,
        version=workflow.version,
        workflow_hash=event.workflow_hash,
        params=params,
        priority=event.priority,
        reference=event.reference,
        owner=event.owner,
    )
    if event.cancelled is not None:
        error = ErrorInfo(kind=kinds.CANCELLED, message=event.cancelled)
        end_job(draft, JobStatus.CANCELLED, "job_cancelled", error=error, before_submission=True)
        return draft.decision()
    enter_step(draft, workflow.first_step)
    return draft.decision()


def _new_job(event: JobSubmitted, workflow: Workflow, params: JsonObject, now: datetime) -> Job:
    """A queued job with its resolved params and, if it has a time limit, its deadline."""
    job = Job(
        job_id=event.job_id,
        workflow=workflow,
        workflow_hash=event.workflow_hash,
        params=params,
        status=JobStatus.QUEUED,
        priority=event.priority,
        reference=event.reference,
        created_at=now,
        updated_at=now,
        updates_key=event.updates_key,
        secret=event.secret,
        owner=event.owner,
        timeout_s=event.timeout_s,
    )
    limit = job.job_timeout_s
    return replace(job, deadline_at=later(now, limit)) if limit is not None else job


def may_act_on(owner: str | None, requester: str | None, admin: bool) -> bool:
    """Whether ``requester`` may cancel, rerun or read a job of ``owner``: its owner
    and admins may (a job nobody owns is open to all)."""
    return owner is None or admin or requester == owner


def _refuse_unless_allowed(
    job: Job, requester: str | None, admin: bool, action: str
) -> Decision | None:
    """A refusal if ``requester`` may not ``action`` the job (see :func:`may_act_on`)."""
    if may_act_on(job.owner, requester, admin):
        return None
    who = f"user {requester!r}" if requester else "a caller without a user id"
    return Decision(
        job=job,
        rejected=f"{who} may not {action} job {job.job_id}: it belongs to another user",
        rejection_kind=kinds.FORBIDDEN,
    )


def _apply_cancel(job: Job | None, event: CancelRequested, now: datetime) -> Decision:
    """End the job ``cancelled`` and stop its worker; a finished job stays as it is."""
    if job is None:
        return Decision(ignored="unknown job")
    refusal = _refuse_unless_allowed(job, event.requester, event.admin, "cancel")
    if refusal is not None:
        return refusal
    if job.status.is_terminal:
        data = {"reason": event.reason, "status": str(job.status)}
        return Decision(
            job=job, records=(Record("cancel_ignored", data),), ignored=f"job is {job.status}"
        )
    draft = Draft.of(job, now)
    abort_live(draft, AttemptStatus.CANCELLED, event.reason)
    error = ErrorInfo(kind="cancelled", message=event.reason, step=job.current_step)
    end_job(draft, JobStatus.CANCELLED, "job_cancelled", error=error)
    return draft.decision()


RERUNNABLE = (JobStatus.FAILED, JobStatus.TIMED_OUT)


def _apply_rerun(job: Job | None, event: RerunRequested, now: datetime) -> Decision:
    """Start a new run of a failed or timed-out job from the step that failed.

    Outputs of the steps before it are kept; the run counter, deadline, crash
    counts and error start afresh. The history keeps both runs.
    """
    if job is None:
        return Decision(ignored="unknown job")
    refusal = _refuse_unless_allowed(job, event.requester, event.admin, "retry")
    if refusal is not None:
        return refusal
    step = find_step(job, _failed_step(job) or "")
    if job.status not in RERUNNABLE or step is None:
        reason = f"only failed or timed-out jobs can be rerun; job is {job.status}"
        record = Record("rerun_refused", {"reason": reason, "requested": event.reason})
        return Decision(job=job, records=(record,), ignored=reason)
    timeout_s = job.job_timeout_s
    draft = Draft.of(job, now)
    kept = {k: v for k, v in job.outputs.items() if k not in (step.name, FAILURE_KEY)}
    draft.change(
        status=JobStatus.QUEUED,
        run=job.run + 1,
        outputs=kept,
        crashes={},
        error=None,
        finished_at=None,
        deadline_at=later(now, timeout_s) if timeout_s is not None else None,
    )
    draft.record(
        "job_rerun",
        run=job.run + 1,
        from_step=step.name,
        previous_status=str(job.status),
        reason=event.reason,
    )
    enter_step(draft, step)
    return draft.decision()


def _failed_step(job: Job) -> str | None:
    """The step a failed job failed in (its error's step, else where it stopped)."""
    if job.error is not None and job.error.step is not None:
        return job.error.step
    return job.current_step


# --- timers ------------------------------------------------------------------------------


def _apply_timer(job: Job | None, event: TimerFired, now: datetime) -> Decision:
    """Handle every deadline due by the event's horizon (see
    :func:`segue.engine.timers.deadlines`)."""
    if job is None:
        return Decision(ignored="unknown job")
    if job.status.is_terminal:
        return Decision(job=job, ignored=f"job is {job.status}")
    horizon = now if event.horizon is None else min(event.horizon, now)
    deadline = due_deadline(job, horizon)
    if deadline is None:
        return Decision(job=job, ignored="no deadline due")
    draft = Draft.of(job, now)
    # Each handled deadline ends its attempt or moves it past ``horizon``; the bound is
    # a guard only: what it leaves is due at once, so the sweeper comes back for it.
    for _ in range(2 * len(job.attempts) + 4):
        _on_deadline(draft, deadline)
        deadline = due_deadline(draft.job, horizon)
        if deadline is None:
            break
    return draft.decision()


def _on_deadline(draft: Draft, deadline: Deadline) -> None:
    """Apply one passed deadline to the job (the job's, or one live attempt's)."""
    limit = f"{deadline.after_s:g}s"
    if deadline.kind is DeadlineKind.JOB_TIMEOUT:
        abort_live(draft, AttemptStatus.TIMED_OUT, f"job timeout after {limit}")
        message = f"job did not finish within {limit}"
        error = ErrorInfo(kind="job_timeout", message=message, step=draft.job.current_step)
        end_job(draft, JobStatus.TIMED_OUT, "job_timed_out", error=error)
        return
    attempt = draft.job.attempt(deadline.attempt_id) if deadline.attempt_id else None
    if attempt is None or not attempt.is_live:
        return
    match deadline.kind:
        case DeadlineKind.RETRY_DUE:
            release(draft, attempt)
        case DeadlineKind.DISPATCH_TIMEOUT:
            message = f"no worker started the task within {limit}"
            _time_out_attempt(draft, attempt, "dispatch_timeout", message)
        case DeadlineKind.HEARTBEAT_TIMEOUT:
            lose(draft, attempt, f"heartbeat timeout after {limit}")
        case DeadlineKind.STEP_TIMEOUT:
            _time_out_attempt(draft, attempt, "step_timeout", f"step did not finish within {limit}")


def _time_out_attempt(draft: Draft, attempt: Attempt, kind: str, message: str) -> None:
    """Stop an attempt that took too long; it counts as a step failure (retry applies)."""
    error = ErrorInfo(kind=kind, message=message, step=attempt.step)
    timed_out = abort(draft, attempt, AttemptStatus.TIMED_OUT, message, error=error)
    attempt_failed(draft, timed_out, error, retryable=True)


# --- worker events -----------------------------------------------------------------------


def _apply_worker_event(job: Job | None, event: WorkerEvent, now: datetime) -> Decision:
    """Fence the event by attempt id, then apply it to its attempt."""
    if job is None:
        return Decision(ignored="unknown job")
    attempt = job.attempt(event.attempt_id)
    if attempt is None:  # never one of this job's: forged or misrouted, not stale
        return Decision(job=job, rejected=f"unknown attempt {event.attempt_id} of job {job.job_id}")
    expected = attempt_token(job, attempt.attempt_id)
    if expected is not None and not hmac.compare_digest(event.token or "", expected):
        return Decision(
            job=job,
            rejected=f"{_event_name(event)} for attempt {attempt.attempt_id} of job "
            f"{job.job_id} without the attempt's token",
            rejection_kind=kinds.WRONG_TOKEN,
        )
    target = _fence(job, attempt, event)
    if isinstance(target, _Fenced):
        return _ignore(job, attempt, event, target.reason, answer=target.answer)
    draft = Draft.of(job, now)
    match event:
        case StepStarted():
            return _apply_started(draft, target, event)
        case StepProgressed():
            return _apply_progressed(draft, target, event)
        case StepHeartbeat():
            return _apply_heartbeat(draft, target, event)
        case StepSucceeded():
            return _apply_succeeded(draft, target, event)
        case StepFailed():
            return _apply_failed(draft, target, event)


@dataclass(frozen=True, slots=True)
class _Fenced:
    """Why a worker event must be ignored, and whether its worker is told to stop."""

    reason: str
    answer: bool = True


def _fence(job: Job, attempt: Attempt, event: WorkerEvent) -> Attempt | _Fenced:
    """The attempt a worker event may change, or why the event must be ignored.

    A running attempt belongs to the worker that started it: reports of any
    other worker are refused, but for a redelivered ``started`` (the broker gave
    the task to a new worker because the first one went away: see
    :func:`_apply_redelivered`) and the result of the worker such a ``started``
    took it from (see :func:`_from_the_worker_it_was_taken_from`).
    """
    if job.status.is_terminal:
        return _Fenced(f"job is {job.status}")
    if not attempt.is_live:
        return _Fenced(f"stale attempt (already {attempt.status})")
    if attempt.status is AttemptStatus.SCHEDULED:
        return _Fenced("attempt not dispatched yet")
    if (
        _held_by_another(attempt, event)
        and not (isinstance(event, StepStarted) and event.redelivered)
        and not _from_the_worker_it_was_taken_from(attempt, event)
    ):
        # A heartbeat or progress of another worker may have overtaken that worker's
        # redelivered ``started`` (events are handled in concurrent batches): it is
        # fenced, but only a ``started`` is answered with a stop, which every worker
        # sends first.
        answer = not isinstance(event, StepProgressed | StepHeartbeat)
        return _Fenced(f"attempt runs on worker {attempt.worker_id!r}", answer)
    return attempt


def _from_the_worker_it_was_taken_from(attempt: Attempt, event: WorkerEvent) -> bool:
    """Whether ``event`` is the result of the worker a redelivered ``started`` took the
    running attempt from.

    The takeover assumed that worker had gone away. With a task delivered twice
    (the copy handed back by a busy worker comes back marked redelivered) it may
    be alive and running, and the new holder may have reported its own result
    before its ``started`` was handled (events are handled in concurrent batches),
    which was refused then. The old holder's result is the step's result: it ran
    the same task to its end, and it is the first result applied, so it is
    applied once. The new holder is told to stop.
    """
    return (
        isinstance(event, StepSucceeded | StepFailed)
        and attempt.previous_worker_id is not None
        and event.worker_id == attempt.previous_worker_id
    )


def _held_by_another(attempt: Attempt, event: WorkerEvent) -> bool:
    """Whether a worker other than the event's holds the running attempt."""
    return (
        attempt.status is AttemptStatus.RUNNING
        and bool(attempt.worker_id)
        and bool(event.worker_id)
        and event.worker_id != attempt.worker_id
    )


def _ignore(
    job: Job, attempt: Attempt, event: WorkerEvent, reason: str, *, answer: bool = True
) -> Decision:
    """Leave the job as it is; record why, unless the event is a heartbeat or progress.

    A worker still busy with the attempt (``started``, progress, heartbeat) is
    told to stop: it must not run it, or not any more (``answer`` False: it may).
    """
    effects: tuple[StopAttempt, ...] = ()
    if answer and isinstance(event, StepStarted | StepProgressed | StepHeartbeat):
        # The answer to a ``started`` stops that start only: the same worker may
        # take the task again and legitimately become its holder before the
        # answer reaches it (a ``started`` whose confirm was lost, then redelivered).
        run_id = event.run_id if isinstance(event, StepStarted) else None
        why = f"not yours to run: {reason}"
        effects = (stop(job, attempt, why, event.worker_id, run_id),)
    if isinstance(event, StepHeartbeat | StepProgressed):
        return Decision(job=job, effects=effects, ignored=reason)
    data = {"event": _event_name(event), "attempt_id": str(event.attempt_id), "reason": reason}
    if event.worker_id:
        data["worker_id"] = event.worker_id
    return Decision(
        job=job, effects=effects, records=(Record("event_ignored", data),), ignored=reason
    )


def _running(draft: Draft, attempt: Attempt, event: WorkerEvent) -> Attempt:
    """The attempt as running: a report about a dispatched attempt starts it implicitly."""
    if attempt.status is AttemptStatus.DISPATCHED:
        return start(draft, attempt, event.worker_id, _event_name(event))
    return attempt


def _apply_started(draft: Draft, attempt: Attempt, event: StepStarted) -> Decision:
    """A worker took the task; a redelivery to another worker counts as a crash."""
    if attempt.status is AttemptStatus.DISPATCHED:
        start(draft, attempt, event.worker_id, "step_started", redelivered=event.redelivered)
        return draft.decision()
    if event.redelivered and (event.worker_id or None) != attempt.worker_id:
        if _sent_before_holder_took_it(attempt, event):
            reason = f"stale start: sent before worker {attempt.worker_id!r} took the attempt"
            return _ignore(draft.job, attempt, event, reason)
        return _apply_redelivered(draft, attempt, event)
    # A repeated ``started`` of the worker that runs it (or of one that cannot be
    # told apart from it): that worker must go on, so it is not told to stop.
    return _ignore(draft.job, attempt, event, "attempt already running", answer=False)


def _sent_before_holder_took_it(attempt: Attempt, event: StepStarted) -> bool:
    """Whether a redelivered ``started`` was sent before the holder's start was applied.

    A task is redelivered only after its holder went away, which is after that
    holder reported its start, so a genuine takeover is sent after the holder's
    start. An older one is a copy of a start that is over (an event delivered
    again after an orchestrator crash, a duplicate): taking the attempt over on
    it would stop the worker that runs it. Should a genuine takeover look older
    (the holder's start was applied late, or the clocks are skewed), it is
    refused too, which is safe: its holder is gone, so the attempt is found lost
    and dispatched again.
    """
    sent, taken = event.sent_at, attempt.started_at
    if sent is None or taken is None or sent.tzinfo is None or taken.tzinfo is None:
        return False
    return sent < taken


def _apply_redelivered(draft: Draft, attempt: Attempt, event: StepStarted) -> Decision:
    """The broker gave a running task to a new worker: the previous one died with it."""
    step = draft.job.workflow.step(attempt.step)
    reason = f"task redelivered after worker {attempt.worker_id or 'unknown'!r} went away"
    crashes = count_crash(draft, attempt)
    draft.record(
        "step_redelivered",
        **attempt_data(attempt),
        worker_id=event.worker_id,
        previous_worker_id=attempt.worker_id,
        crashes=crashes,
    )
    if crashes >= step.max_crashes:
        error = ErrorInfo(kind="worker_lost", message=reason, step=step.name)
        abort(draft, attempt, AttemptStatus.LOST, reason, error=error)
        # The abort stops the previous worker; the new one must not run it either.
        ending = f"not yours to run: job is {JobStatus.FAILED}"
        draft.emit(stop(draft.job, attempt, ending, event.worker_id))
        quarantine(draft, attempt, crashes, reason)
    else:
        if attempt.worker_id:  # should the previous worker still be alive, it stops
            draft.emit(stop(draft.job, attempt, reason, attempt.worker_id))
        restarted = replace(
            attempt,
            worker_id=event.worker_id or None,
            previous_worker_id=attempt.worker_id,
            started_at=draft.now,
            last_seen_at=draft.now,
            progress=None,
            progress_message=None,
        )
        draft.put_attempt(restarted)
    return draft.decision()


def _apply_progressed(draft: Draft, attempt: Attempt, event: StepProgressed) -> Decision:
    """Store and announce the progress; a repeat only shows the worker is alive."""
    attempt = _running(draft, attempt, event)
    if (attempt.progress, attempt.progress_message) == (event.fraction, event.message):
        draft.put_attempt(replace(attempt, last_seen_at=draft.now))
        return draft.decision()
    number = attempt.progress_reports + 1
    updated = replace(
        attempt,
        progress=event.fraction,
        progress_message=event.message,
        last_seen_at=draft.now,
        progress_reports=number,
    )
    draft.put_attempt(updated)
    if keeps_report(number):
        draft.record(
            "step_progress", **attempt_data(updated), fraction=event.fraction, message=event.message
        )
    draft.emit(_progress_notice(draft.job, updated))
    return draft.decision()


def _progress_notice(job: Job, attempt: Attempt) -> NotifyProgress:
    """The progress to announce: the attempt's own, or for a map item its whole step's."""
    fraction, message = attempt.progress or 0.0, attempt.progress_message or ""
    if attempt.item_index is None:
        return NotifyProgress(job.job_id, attempt.step, fraction, message)
    step = job.workflow.step(attempt.step)
    items = map_items(job, step)
    if isinstance(items, list):
        fraction = map_fraction(job, step, attempt.iteration, len(items))
    return NotifyProgress(job.job_id, step.name, fraction, f"item {attempt.item_index}: {message}")


def _apply_heartbeat(draft: Draft, attempt: Attempt, event: StepHeartbeat) -> Decision:
    """The worker is alive: push the heartbeat deadline back."""
    attempt = _running(draft, attempt, event)
    draft.put_attempt(replace(attempt, last_seen_at=draft.now))
    return draft.decision()


def _apply_succeeded(draft: Draft, attempt: Attempt, event: StepSucceeded) -> Decision:
    """Store the output, advance the step (:func:`~segue.engine.flow.attempt_succeeded`)."""
    attempt = _running(draft, _taken_back(draft, attempt, event), event)
    attempt_succeeded(draft, replace(attempt, last_seen_at=draft.now), event.output)
    return draft.decision()


def _apply_failed(draft: Draft, attempt: Attempt, event: StepFailed) -> Decision:
    """Retry the attempt's work or count it failed (:func:`~segue.engine.flow.attempt_failed`)."""
    attempt = _running(draft, _taken_back(draft, attempt, event), event)
    error = event.error.model_copy(update={"step": attempt.step})
    failed = settle(draft, attempt, AttemptStatus.FAILED, error=error, last_seen_at=draft.now)
    attempt_failed(draft, failed, error, event.retryable)
    return draft.decision()


def _taken_back(draft: Draft, attempt: Attempt, event: StepSucceeded | StepFailed) -> Attempt:
    """The attempt as the result's worker's: a result of the worker a takeover took the
    attempt from ends it, and the worker that took it over must stop running it."""
    if not _from_the_worker_it_was_taken_from(attempt, event):
        return attempt
    draft.record(
        "step_taken_back",
        **attempt_data(attempt),
        worker_id=event.worker_id,
        previous_worker_id=attempt.worker_id,
    )
    if attempt.worker_id:
        reason = f"not yours to run: worker {event.worker_id!r} reported its result"
        draft.emit(stop(draft.job, attempt, reason, attempt.worker_id))
    return replace(attempt, worker_id=event.worker_id, previous_worker_id=attempt.worker_id)


# --- helpers -----------------------------------------------------------------------------


def _event_name(event: Event) -> str:
    """``StepStarted`` -> ``step_started``: the event's name in history entries."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


def _engine_error(job: Job | None, event: Event, exc: Exception, now: datetime) -> Decision:
    """The decision for an event that made the engine fail: change nothing, say why.

    A timer would fail the same way each time it fires, so a job whose
    deadlines cannot be handled is failed with the reason instead (its workers
    are stopped, its followers told). Should even that fail, the decision says
    ``engine_error`` and the shell waits before it tries the timer again.
    """
    reason = f"engine error: {type(exc).__name__}: {exc}"
    if job is None:
        if isinstance(event, JobSubmitted):
            return Decision(rejected=reason, rejection_kind=kinds.REJECTED)
        return Decision(ignored=reason)
    if isinstance(event, TimerFired) and not job.status.is_terminal:
        try:
            return _fail_on_engine_error(job, reason, now)
        except Exception as again:  # nothing more to try: report both
            reason += f" (and failing the job: {type(again).__name__}: {again})"
    record = Record("engine_error", {"event": _event_name(event), "error": reason})
    return Decision(job=job, records=(record,), ignored=reason, engine_error=True)


def _fail_on_engine_error(job: Job, reason: str, now: datetime) -> Decision:
    """Fail a job whose timers make the engine fail, with the reason."""
    draft = Draft.of(job, now)
    error = ErrorInfo(kind=kinds.ENGINE_ERROR, message=reason, step=job.current_step)
    end_job(draft, JobStatus.FAILED, "job_failed", error=error)
    return draft.decision()
