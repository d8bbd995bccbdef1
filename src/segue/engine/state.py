"""The state of a job and its step attempts, as the engine sees it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid5

from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus, JsonObject
from segue.protocol.tokens import token_digest as token_digest  # re-exported
from segue.workflows.model import Workflow


@dataclass(frozen=True)
class Attempt:
    """One try at running one step.

    ``due_at`` is when a ``scheduled`` attempt is to be dispatched (retry backoff).
    ``item_index`` is the item of a map step this attempt runs (None: not a map).
    ``iteration`` counts the runs of a repeated step (1 unless the step has
    ``repeat``; a branch carries its parallel step's). Attempts of one *slot*
    (same run, step, iteration and item) are the tries of one piece of work:
    numbered from 1, each under the step's retry policy.
    ``progress_reports`` counts the distinct progress reports applied to it (the
    history keeps a subset: see :mod:`segue.engine.progress`).
    ``previous_worker_id`` is the worker a redelivered ``started`` took the running
    attempt from (its result is still applied: see :func:`segue.engine.machine._fence`).
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
    item_index: int | None = None
    iteration: int = 1
    progress_reports: int = 0
    previous_worker_id: str | None = None

    @property
    def slot(self) -> tuple[int, str, int, int | None]:
        """(run, step, iteration, item index): what the attempts of one piece of work share."""
        return (self.run, self.step, self.iteration, self.item_index)

    @property
    def is_live(self) -> bool:
        """Whether the attempt is unfinished (scheduled, dispatched or running)."""
        return not self.status.is_terminal


@dataclass(frozen=True)
class Job:
    """A job: its pinned workflow, parameters, status and every attempt so far.

    ``attempts`` is ordered by creation. ``current_step`` is the step the job is
    in: a task step (its attempts, one per map item), or a parallel step (the
    attempts of its branches). Several attempts may be live at once (map items,
    branches); every live attempt belongs to the current step.
    ``outputs`` maps each succeeded step to its output.
    ``crashes`` counts lost attempts per step, or per ``step[item]`` of a map
    (worker died, not a handler error).
    ``run`` counts the runs of the job: a rerun of a failed job starts run 2.
    ``updates_key`` is where the submitter receives the job's updates (if it said).
    ``secret`` is the random secret its attempt ids and tokens derive from
    (None: a job stored before secrets existed); ``owner`` the user that
    submitted it (None: the submission named none); ``update_seq`` the
    sequence number of its latest update to followers; ``timeout_s`` its own
    time limit, if its submission set one (see :attr:`job_timeout_s`).
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
    updates_key: str | None = None
    secret: str | None = field(default=None, repr=False)
    owner: str | None = None
    update_seq: int = 0
    timeout_s: float | None = None

    @property
    def job_timeout_s(self) -> float | None:
        """The job's time limit: its own (``timeout_s``, set at submission) or its
        workflow's, whichever is tighter; None when neither has one."""
        limits = [limit for limit in (self.timeout_s, self.workflow.timeout_s) if limit]
        return min(limits, default=None)

    @property
    def current_attempt(self) -> Attempt | None:
        """The newest attempt, if any."""
        return self.attempts[-1] if self.attempts else None

    @property
    def live_attempts(self) -> tuple[Attempt, ...]:
        """Every unfinished attempt, oldest first."""
        return tuple(attempt for attempt in self.attempts if attempt.is_live)

    def attempt(self, attempt_id: UUID) -> Attempt | None:
        """The attempt with this id, if the job has one."""
        for attempt in self.attempts:
            if attempt.attempt_id == attempt_id:
                return attempt
        return None


def new_attempt_id(job_id: UUID, ordinal: int, secret: str | None = None) -> UUID:
    """Id of the job's ``ordinal``-th attempt: derived from the job's random
    ``secret``, so nobody can guess it, yet ``decide`` stays pure.

    Jobs stored before secrets existed (``secret`` None) keep ids derived from
    the job id.
    """
    if secret is None:
        return uuid5(job_id, f"attempt-{ordinal}")
    digest = hmac.new(secret.encode(), f"attempt-{ordinal}".encode(), hashlib.sha256).digest()
    return UUID(bytes=digest[:16], version=4)


def attempt_token(job: Job, attempt_id: UUID) -> str | None:
    """The token a worker must echo in every report about the attempt (None: the
    job has no secret, reports are not checked)."""
    if job.secret is None:
        return None
    return hmac.new(job.secret.encode(), b"token:" + attempt_id.bytes, hashlib.sha256).hexdigest()[
        :32
    ]
