"""Moves shared by several events: dispatch, start, retry, fail, end the job.

Each function takes the :class:`~segue.engine.draft.Draft` of the decision in
progress and appends the state change, its history record and its effects
together, so no caller can forget one of the three.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from segue.engine.backoff import retry_delay_s
from segue.engine.draft import Draft, JsonObject, attempt_data
from segue.engine.effects import DispatchStep, NotifyResult, StopAttempt
from segue.engine.state import Attempt, Job, new_attempt_id
from segue.engine.timers import find_step, later
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.workflows.conditions import next_step
from segue.workflows.model import RetryPolicy, Step

FAILURE_KEY = "_failure"
"""Key in ``Job.outputs`` (and so in task inputs) describing the failure an
``on_failure`` step handles. Step names start with a letter, so it never clashes."""


def dispatch(draft: Draft, step: Step, number: int) -> None:
    """Add attempt ``number`` of ``step`` as dispatched and send its task now."""
    job = draft.job
    attempt = Attempt(
        attempt_id=new_attempt_id(job.job_id, len(job.attempts) + 1),
        step=step.name,
        number=number,
        status=AttemptStatus.DISPATCHED,
        created_at=draft.now,
        dispatched_at=draft.now,
        run=job.run,
    )
    draft.put_attempt(attempt)
    draft.change(current_step=step.name)
    _send(draft, attempt, step)


def release(draft: Draft, attempt: Attempt) -> None:
    """Dispatch a scheduled attempt whose backoff has passed."""
    sent = replace(attempt, status=AttemptStatus.DISPATCHED, dispatched_at=draft.now)
    draft.put_attempt(sent)
    _send(draft, sent, draft.job.workflow.step(attempt.step))


def _send(draft: Draft, attempt: Attempt, step: Step) -> None:
    """Record and emit the task of a just-dispatched attempt."""
    job = draft.job
    draft.record("step_dispatched", **attempt_data(attempt), queue=step.queue)
    draft.emit(
        DispatchStep(
            job_id=job.job_id,
            workflow=job.workflow.name,
            step=step.name,
            queue=step.queue,
            attempt=attempt.number,
            attempt_id=attempt.attempt_id,
            priority=job.priority,
            params=dict(job.params),
            inputs=dict(job.outputs),
            heartbeat_s=step.heartbeat_s,
            timeout_s=step.timeout_s,
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
        draft.emit(StopAttempt(draft.job.job_id, attempt.attempt_id, reason))
    return ended


def abort_current(draft: Draft, status: AttemptStatus, reason: str) -> None:
    """End the current attempt, if it is unfinished (cancel, job timeout)."""
    attempt = draft.job.current_attempt
    if attempt is not None and not attempt.status.is_terminal:
        abort(draft, attempt, status, reason)


def succeed_step(draft: Draft, attempt: Attempt, output: JsonObject) -> None:
    """Store the attempt's output and go on to the next step, or finish the job."""
    done = settle(draft, attempt, AttemptStatus.SUCCEEDED, output=output)
    draft.change(outputs={**draft.job.outputs, attempt.step: output})
    step = draft.job.workflow.step(attempt.step)
    target, error = _choose_next(draft.job, step)
    draft.record("step_succeeded", **attempt_data(done), output=output, next=target)
    if error is not None:
        end_job(draft, JobStatus.FAILED, "job_failed", error=error)
    else:
        goto(draft, step.name, target)


def _choose_next(job: Job, step: Step) -> tuple[str | None, ErrorInfo | None]:
    """The step after ``step``, or why it could not be chosen (a broken condition)."""
    try:
        return next_step(step, job.params, job.outputs), None
    except Exception as exc:  # a condition must not crash the engine: fail the job instead
        message = f"cannot choose the step after {step.name!r}: {exc}"
        return None, ErrorInfo(kind="condition_error", message=message, step=step.name)


def goto(draft: Draft, origin: str, target: str | None) -> None:
    """Continue with step ``target`` after ``origin``; None ends the job successfully."""
    if target is None:
        output = draft.job.outputs.get(origin)
        end_job(draft, JobStatus.SUCCEEDED, "job_succeeded", output=output)
        return
    step = find_step(draft.job, target)
    if step is None:
        message = f"step {origin!r} leads to unknown step {target!r}"
        error = ErrorInfo(kind="workflow_error", message=message, step=origin)
        end_job(draft, JobStatus.FAILED, "job_failed", error=error)
        return
    dispatch(draft, step, 1)


def fail_step(draft: Draft, attempt: Attempt, error: ErrorInfo, retryable: bool) -> None:
    """React to a failed attempt: retry it, continue with ``on_failure``, or fail the job."""
    step = draft.job.workflow.step(attempt.step)
    if _may_retry(step.retry, attempt, error, retryable):
        retry(draft, step, attempt.number, error)
        return
    dumped = error.model_dump(mode="json")
    draft.record("step_failed", **attempt_data(attempt), error=dumped)
    if step.on_failure is None:
        end_job(draft, JobStatus.FAILED, "job_failed", error=error)
        return
    failure = {"step": step.name, "error": dumped}
    draft.change(outputs={**draft.job.outputs, FAILURE_KEY: failure})
    goto(draft, step.name, step.on_failure)


def _may_retry(policy: RetryPolicy, attempt: Attempt, error: ErrorInfo, retryable: bool) -> bool:
    """Whether the policy allows another attempt after this failure."""
    return (
        retryable
        and error.kind not in policy.non_retryable
        and attempt.number < policy.max_attempts
    )


def retry(draft: Draft, step: Step, failed_number: int, error: ErrorInfo) -> None:
    """Schedule the next attempt after the backoff delay (dispatch now when it is 0)."""
    job = draft.job
    number = failed_number + 1
    attempt_id = new_attempt_id(job.job_id, len(job.attempts) + 1)
    delay_s = retry_delay_s(step.retry, failed_number, attempt_id)
    due_at = later(draft.now, delay_s)
    draft.record(
        "step_retry_scheduled",
        step=step.name,
        attempt=number,
        attempt_id=str(attempt_id),
        due_at=due_at.isoformat(),
        delay_s=delay_s,
        error=error.model_dump(mode="json"),
    )
    if due_at <= draft.now:
        dispatch(draft, step, number)
        return
    scheduled = Attempt(
        attempt_id=attempt_id,
        step=step.name,
        number=number,
        status=AttemptStatus.SCHEDULED,
        created_at=draft.now,
        due_at=due_at,
        run=draft.job.run,
    )
    draft.put_attempt(scheduled)
    draft.change(current_step=step.name)


def lose(draft: Draft, attempt: Attempt, reason: str) -> None:
    """A worker vanished while running ``attempt``: count a crash, then redispatch or quarantine.

    A crash is not the step's fault, so it consumes no retry: the new attempt
    keeps the lost attempt's number.
    """
    step = draft.job.workflow.step(attempt.step)
    error = ErrorInfo(kind="worker_lost", message=reason, step=step.name)
    lost = abort(draft, attempt, AttemptStatus.LOST, reason, error=error)
    crashes = count_crash(draft, step.name)
    draft.record(
        "step_lost", **attempt_data(lost), worker_id=lost.worker_id, reason=reason, crashes=crashes
    )
    if crashes < step.max_crashes:
        dispatch(draft, step, attempt.number)
    else:
        quarantine(draft, step, crashes, reason)


def count_crash(draft: Draft, step: str) -> int:
    """Add one worker crash to ``step``'s count and return the new count."""
    crashes = draft.job.crashes.get(step, 0) + 1
    draft.change(crashes={**draft.job.crashes, step: crashes})
    return crashes


def quarantine(draft: Draft, step: Step, crashes: int, reason: str) -> None:
    """Fail a job whose step keeps killing workers, with a diagnosis."""
    message = f"worker lost {crashes} times: {reason}"
    error = ErrorInfo(kind="worker_lost", message=message, step=step.name)
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
    """Make the job terminal, record why and tell its followers (the one NotifyResult)."""
    draft.change(status=status, finished_at=draft.now, error=error)
    if error is not None:
        data["error"] = error.model_dump(mode="json")
    draft.record(record_type, step=draft.job.current_step, **data)
    draft.emit(NotifyResult(draft.job.job_id, status, output=output, error=error))
