"""What a committed write did that operators count: jobs submitted and finished,
steps ended (with how long they ran) and workers lost.

Pure, and cheap enough for every batch the applier commits: it reads the
states before and after that the batch holds anyway, with no query. Only the
jobs whose attempts changed are looked into.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from segue.engine.state import Attempt, Job
from segue.protocol.messages import AttemptStatus, JobStatus
from segue.store.repository import JobWrite


@dataclass(frozen=True, slots=True)
class StepEnded:
    """An attempt of a step ended; ``seconds`` it ran (None: it never started)."""

    workflow: str
    step: str
    status: AttemptStatus
    seconds: float | None


def submitted(write: JobWrite) -> bool:
    """Whether the write stored a new job."""
    return write.before is None


def finished(write: JobWrite) -> JobStatus | None:
    """The job's final status if the write ended it, else None."""
    after = write.after.status
    if not after.is_terminal:
        return None
    before = write.before
    if before is not None and before.status.is_terminal:
        return None
    return after


def ended_steps(write: JobWrite) -> Iterator[StepEnded]:
    """The attempts that were live before the write and are over after it."""
    before, after = write.before, write.after
    if before is None or before.attempts is after.attempts:
        return
    live = {attempt.attempt_id for attempt in before.attempts if attempt.is_live}
    if not live:
        return
    for attempt in after.attempts:
        if attempt.attempt_id in live and not attempt.is_live:
            yield StepEnded(_workflow(after), attempt.step, attempt.status, _ran(attempt))


def _workflow(job: Job) -> str:
    return job.workflow.name


def _ran(attempt: Attempt) -> float | None:
    if attempt.started_at is None or attempt.finished_at is None:
        return None
    return max(0.0, (attempt.finished_at - attempt.started_at).total_seconds())
