"""When a job next needs attention without any message arriving.

Every non-terminal job has deadlines (job timeout, retry backoff, dispatch,
heartbeat and step timeouts). The service stores :func:`next_wakeup` in a
column; its sweeper sends :class:`~segue.engine.events.TimerFired` once that
moment has passed, and :func:`segue.engine.machine.decide` handles what is due
using the same :func:`deadlines`, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from segue.engine.state import Attempt, Job
from segue.protocol.messages import AttemptStatus
from segue.workflows.model import Step


class DeadlineKind(StrEnum):
    """What happens when a deadline passes."""

    JOB_TIMEOUT = "job_timeout"
    RETRY_DUE = "retry_due"
    DISPATCH_TIMEOUT = "dispatch_timeout"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    STEP_TIMEOUT = "step_timeout"


@dataclass(frozen=True)
class Deadline:
    """A moment at which the job needs attention; ``after_s`` is the configured limit,
    ``attempt_id`` the attempt it concerns (None: the job's own timeout)."""

    kind: DeadlineKind
    at: datetime
    after_s: float = 0.0
    attempt_id: UUID | None = None


def later(moment: datetime, seconds: float) -> datetime:
    """``moment + seconds``, saturating at ``datetime.max`` instead of overflowing.

    Any positive duration gives a strictly later moment (at least one
    microsecond), so a deadline just set is never already due: a sweeper can
    not spin on a job whose wake-up never moves forward.
    """
    if not seconds > 0:  # also catches NaN
        return moment
    try:
        return moment + max(timedelta(seconds=seconds), timedelta(microseconds=1))
    except (OverflowError, ValueError):
        return datetime.max.replace(tzinfo=moment.tzinfo)


def find_step(job: Job, name: str) -> Step | None:
    """The step of the job's pinned workflow called ``name``, if there is one."""
    return next((step for step in job.workflow.steps if step.name == name), None)


def deadlines(job: Job) -> list[Deadline]:
    """Every pending deadline of the job, in the order they are handled when due.

    The job timeout comes first; then the deadlines of every unfinished attempt
    (map items and parallel branches run side by side), oldest attempt first.
    A terminal job has none.
    """
    if job.status.is_terminal:
        return []
    found: list[Deadline] = []
    if job.deadline_at is not None:
        timeout_s = job.job_timeout_s or 0.0
        found.append(Deadline(DeadlineKind.JOB_TIMEOUT, job.deadline_at, timeout_s))
    for attempt in job.live_attempts:
        step = find_step(job, attempt.step)
        if step is not None:
            found.extend(_attempt_deadlines(step, attempt))
    return found


def _attempt_deadlines(step: Step, attempt: Attempt) -> list[Deadline]:
    """The deadlines of one unfinished attempt, by its status."""
    match attempt.status:
        case AttemptStatus.SCHEDULED:
            due = attempt.due_at or attempt.created_at
            return [Deadline(DeadlineKind.RETRY_DUE, due, attempt_id=attempt.attempt_id)]
        case AttemptStatus.DISPATCHED if step.dispatch_timeout_s is not None:
            since = attempt.dispatched_at or attempt.created_at
            return [_limit(DeadlineKind.DISPATCH_TIMEOUT, since, step.dispatch_timeout_s, attempt)]
        case AttemptStatus.RUNNING:
            started = attempt.started_at or attempt.dispatched_at or attempt.created_at
            found: list[Deadline] = []
            if step.heartbeat_s is not None:
                seen = attempt.last_seen_at or started
                found.append(
                    _limit(DeadlineKind.HEARTBEAT_TIMEOUT, seen, step.heartbeat_s, attempt)
                )
            if step.timeout_s is not None:
                found.append(_limit(DeadlineKind.STEP_TIMEOUT, started, step.timeout_s, attempt))
            return found
        case _:
            return []


def _limit(kind: DeadlineKind, since: datetime, seconds: float, attempt: Attempt) -> Deadline:
    """The deadline of ``attempt`` ``seconds`` after ``since``."""
    return Deadline(kind, later(since, seconds), seconds, attempt.attempt_id)


def due_deadline(job: Job, now: datetime) -> Deadline | None:
    """The first deadline to handle at ``now``, or None when nothing is due."""
    return next((deadline for deadline in deadlines(job) if deadline.at <= now), None)


def next_wakeup(job: Job) -> datetime | None:
    """The earliest pending deadline of the job; None when it has none (e.g. terminal)."""
    return min((deadline.at for deadline in deadlines(job)), default=None)
