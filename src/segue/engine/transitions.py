"""Moves of single attempts: dispatch, start, settle, retry, lose, stop; and ending the job.

Each function takes the :class:`~segue.engine.draft.Draft` of the decision in
progress and appends the state change, its history record and its effects
together, so no caller can forget one of the three. Which step runs next, and
how map items and parallel branches add up to a step, is :mod:`segue.engine.flow`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from segue.engine.backoff import retry_delay_s
from segue.engine.draft import Draft, attempt_data
from segue.engine.effects import DispatchStep, NotifyResult, StopAttempt
from segue.engine.inputs import task_data
from segue.engine.state import Attempt, Job, attempt_token, new_attempt_id, token_digest
from segue.engine.timers import later
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus, JsonObject
from segue.workflows.model import RetryPolicy, Step


def dispatch(
    draft: Draft,
    step: Step,
    number: int,
    *,
    iteration: int = 1,
    item_index: int | None = None,
) -> Attempt:
    """Add attempt ``number`` of ``step`` (for one map item, in one iteration) as
    dispatched and send its task now."""
    job = draft.job
    attempt = Attempt(
        attempt_id=new_attempt_id(job.job_id, len(job.attempts) + 1, job.secret),
        step=step.name,
        number=number,
        status=AttemptStatus.DISPATCHED,
        created_at=draft.now,
        dispatched_at=draft.now,
        run=job.run,
        item_index=item_index,
        iteration=iteration,
    )
    draft.put_attempt(attempt)
    _send(draft, attempt, step)
    return attempt


def release(draft: Draft, attempt: Attempt) -> None:
    """Dispatch a scheduled attempt whose backoff has passed."""
    sent = replace(attempt, status=AttemptStatus.DISPATCHED, dispatched_at=draft.now)
    draft.put_attempt(sent)
    _send(draft, sent, draft.job.workflow.step(attempt.step))


def _send(draft: Draft, attempt: Attempt, step: Step) -> None:
    """Record and emit the task of a just-dispatched attempt."""
    job = draft.job
    inputs, item = task_data(job, step, attempt.item_index)
    draft.record("step_dispatched", **attempt_data(attempt), queue=step.queue)
    draft.emit(
        DispatchStep(
            job_id=job.job_id,
            workflow=job.workflow.name,
            step=step.name,
            queue=step.queue or "",
            attempt=attempt.number,
            attempt_id=attempt.attempt_id,
            priority=job.priority,
            params=dict(job.params),
            inputs=inputs,
            heartbeat_s=step.heartbeat_s,
            timeout_s=step.timeout_s,
            item=item,
            item_index=attempt.item_index,
            iteration=attempt.iteration,
            token=attempt_token(job, attempt.attempt_id),
        )
    )


def start(draft: Draft, attempt: Attempt, worker_id: str, event: str, **data: Any) -> Attempt:
    """Mark a dispatched attempt running; ``event`` names the report that proved it.

    Any report of a worker about a dispatched attempt (progress, heartbeat or a
    result arriving before ``started``) proves a worker took it.
    """
    started = replace(
        attempt,
        status=AttemptStatus.RUNNING,
        started_at=draft.now,
        last_seen_at=draft.now,
        worker_id=worker_id or None,
    )
    draft.put_attempt(started)
    if draft.job.status is JobStatus.QUEUED:
        draft.change(status=JobStatus.RUNNING)
    draft.record("step_started", **attempt_data(started), worker_id=worker_id, event=event, **data)
    return started


def settle(draft: Draft, attempt: Attempt, status: AttemptStatus, **fields: Any) -> Attempt:
    """End an attempt whose worker is done with it (it reported a result)."""
    ended = replace(attempt, status=status, finished_at=draft.now, **fields)
    draft.put_attempt(ended)
    return ended


def abort(
    draft: Draft, attempt: Attempt, status: AttemptStatus, reason: str, **fields: Any
) -> Attempt:
    """End an attempt from the orchestrator's side; stop its worker if it may have one."""
    ended = settle(draft, attempt, status, **fields)
    if attempt.status in (AttemptStatus.DISPATCHED, AttemptStatus.RUNNING):
        draft.emit(stop(draft.job, attempt, reason, attempt.worker_id))
    return ended


def stop(
    job: Job, attempt: Attempt, reason: str, worker_id: str | None, run_id: str | None = None
) -> StopAttempt:
    """The stop of ``attempt`` for ``worker_id`` (None: whichever worker holds the
    task) and its start ``run_id`` (None: any), proving with the token's digest
    that the orchestrator sent it."""
    token = attempt_token(job, attempt.attempt_id)
    return StopAttempt(
        job.job_id,
        attempt.attempt_id,
        reason,
        worker_id=worker_id or None,
        token_digest=None if token is None else token_digest(token),
        run_id=run_id,
    )


def abort_live(draft: Draft, status: AttemptStatus, reason: str) -> None:
    """End every unfinished attempt, one ``StopAttempt`` for each that a worker may hold
    (cancel, job timeout, a map or parallel step that failed, the job's end)."""
    for attempt in draft.job.live_attempts:
        abort(draft, attempt, status, reason)


def may_retry(policy: RetryPolicy, attempt: Attempt, error: ErrorInfo, retryable: bool) -> bool:
    """Whether the policy allows another attempt after this failure."""
    return (
        retryable
        and error.kind not in policy.non_retryable
        and attempt.number < policy.max_attempts
    )


def retry(draft: Draft, step: Step, failed: Attempt, error: ErrorInfo) -> None:
    """Schedule the next attempt of ``failed``'s slot after the backoff delay
    (dispatch it now when the delay is 0)."""
    job = draft.job
    number = failed.number + 1
    attempt_id = new_attempt_id(job.job_id, len(job.attempts) + 1, job.secret)
    delay_s = retry_delay_s(step.retry, failed.number, attempt_id)
    due_at = later(draft.now, delay_s)
    data = attempt_data(replace(failed, number=number, attempt_id=attempt_id))
    draft.record(
        "step_retry_scheduled",
        **data,
        due_at=due_at.isoformat(),
        delay_s=delay_s,
        error=error.model_dump(mode="json"),
    )
    if due_at <= draft.now:
        dispatch(draft, step, number, iteration=failed.iteration, item_index=failed.item_index)
        return
    scheduled = Attempt(
        attempt_id=attempt_id,
        step=step.name,
        number=number,
        status=AttemptStatus.SCHEDULED,
        created_at=draft.now,
        due_at=due_at,
        run=job.run,
        item_index=failed.item_index,
        iteration=failed.iteration,
    )
    draft.put_attempt(scheduled)


def lose(draft: Draft, attempt: Attempt, reason: str) -> None:
    """A worker vanished while running ``attempt``: count a crash, then redispatch or quarantine.

    A crash is not the step's fault, so it consumes no retry: the new attempt
    keeps the lost attempt's number.
    """
    step = draft.job.workflow.step(attempt.step)
    error = ErrorInfo(kind="worker_lost", message=reason, step=step.name)
    lost = abort(draft, attempt, AttemptStatus.LOST, reason, error=error)
    crashes = count_crash(draft, attempt)
    draft.record(
        "step_lost", **attempt_data(lost), worker_id=lost.worker_id, reason=reason, crashes=crashes
    )
    if crashes < step.max_crashes:
        dispatch(
            draft, step, attempt.number, iteration=attempt.iteration, item_index=attempt.item_index
        )
    else:
        quarantine(draft, attempt, crashes, reason)


def crash_key(attempt: Attempt) -> str:
    """Key of ``Job.crashes`` for the attempt's work: its step, or ``step[item]`` of a map."""
    if attempt.item_index is None:
        return attempt.step
    return f"{attempt.step}[{attempt.item_index}]"


def count_crash(draft: Draft, attempt: Attempt) -> int:
    """Add one worker crash to the count of ``attempt``'s work and return the new count."""
    key = crash_key(attempt)
    crashes = draft.job.crashes.get(key, 0) + 1
    draft.change(crashes={**draft.job.crashes, key: crashes})
    return crashes


def quarantine(draft: Draft, attempt: Attempt, crashes: int, reason: str) -> None:
    """Fail a job whose work keeps killing workers, with a diagnosis (other live
    attempts are stopped)."""
    where = ""
    if attempt.item_index is not None:
        where = f" on item {attempt.item_index}"
    elif attempt.step != draft.job.current_step:
        where = f" on branch {attempt.step!r}"
    message = f"worker lost {crashes} times{where}: {reason}"
    error = ErrorInfo(kind="worker_lost", message=message, step=draft.job.current_step)
    end_job(draft, JobStatus.FAILED, "job_failed", error=error, crashes=crashes)


def end_job(
    draft: Draft,
    status: JobStatus,
    record_type: str,
    *,
    error: ErrorInfo | None = None,
    output: JsonObject | None = None,
    **data: Any,
) -> None:
    """Make the job terminal, record why and tell its followers (the one NotifyResult).

    Attempts still live (other map items or branches) are stopped first.
    """
    abort_live(draft, AttemptStatus.CANCELLED, f"job {status}")
    draft.change(status=status, finished_at=draft.now, error=error)
    if error is not None:
        data["error"] = error.model_dump(mode="json")
    draft.record(record_type, step=draft.job.current_step, **data)
    draft.emit(NotifyResult(draft.job.job_id, status, output=output, error=error))
