"""The state of a job and its step attempts, as the engine sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.workflows.model import Workflow

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """One try at running one step.

    ``due_at`` is when a ``scheduled`` attempt is to be dispatched (retry backoff).
    """

    attempt_id: UUID
    step: str
    number: int
    status: AttemptStatus
    created_at: datetime
    due_at: datetime | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_seen_at: datetime | None = None
    worker_id: str | None = None
    run: int = 1
    progress: float | None = None
    progress_message: str | None = None
    output: JsonObject | None = None
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class Job:
    """A job: its pinned workflow, parameters, status and every attempt so far.

    ``attempts`` is ordered by creation; the last one is the current one.
    ``outputs`` maps each succeeded step to its output.
    ``crashes`` counts lost attempts per step (worker died, not a handler error).
    ``run`` counts the runs of the job: a rerun of a failed job starts run 2.
    """

    job_id: UUID
    workflow: Workflow
    workflow_hash: str
    params: JsonObject
    status: JobStatus
    priority: int
    reference: str | None
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None = None
    finished_at: datetime | None = None
    run: int = 1
    current_step: str | None = None
    attempts: tuple[Attempt, ...] = ()
    outputs: JsonObject = field(default_factory=dict)
    crashes: dict[str, int] = field(default_factory=dict)
    error: ErrorInfo | None = None

    @property
    def current_attempt(self) -> Attempt | None:
        """The newest attempt, if any."""
        return self.attempts[-1] if self.attempts else None

    def attempt(self, attempt_id: UUID) -> Attempt | None:
        """The attempt with this id, if the job has one."""
        for attempt in self.attempts:
            if attempt.attempt_id == attempt_id:
                return attempt
        return None


def new_attempt_id(job_id: UUID, ordinal: int) -> UUID:
    """Deterministic id of the job's ``ordinal``-th attempt (keeps ``decide`` pure)."""
    return uuid5(job_id, f"attempt-{ordinal}")
