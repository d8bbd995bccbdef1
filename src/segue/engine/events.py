"""What can happen to a job: the inputs of :func:`segue.engine.machine.decide`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from segue.protocol.messages import ErrorInfo, JsonObject
from segue.workflows.model import Workflow


@dataclass(frozen=True)
class JobSubmitted:
    """A client submitted a job. ``params`` are raw: the engine validates them.

    ``workflow`` is the definition the orchestrator has under the submitted
    name, None when it has none (``workflow_name`` then says what was asked for):
    a new job is refused, a resubmission of an existing job is a duplicate, as
    the job keeps the definition it pinned.

    ``secret`` is fresh randomness from the shell (the job's attempt ids and
    tokens derive from it); ``owner`` the validated user that submitted it;
    ``cancelled`` the reason of a cancel that arrived before the submission
    (the job then ends cancelled without running); ``timeout_s`` the job's
    own time limit (the workflow's applies too: the tighter one counts).
    """

    job_id: UUID
    workflow: Workflow | None
    workflow_hash: str
    params: JsonObject
    priority: int = 5
    reference: str | None = None
    workflow_name: str = ""
    updates_key: str | None = None
    secret: str | None = field(default=None, repr=False)
    owner: str | None = None
    cancelled: str | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class StepStarted:
    """A worker started an attempt (``redelivered``: the broker delivered it before;
    ``run_id``: names this start, for the stop that may answer it; ``sent_at``: when
    the worker sent the report, by its clock)."""

    attempt_id: UUID
    worker_id: str = ""
    redelivered: bool = False
    token: str | None = None
    run_id: str | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True)
class StepProgressed:
    """A worker reported progress of an attempt."""

    attempt_id: UUID
    fraction: float
    message: str = ""
    worker_id: str = ""
    token: str | None = None


@dataclass(frozen=True)
class StepHeartbeat:
    """A worker said an attempt is still running."""

    attempt_id: UUID
    worker_id: str = ""
    token: str | None = None


@dataclass(frozen=True)
class StepSucceeded:
    """An attempt's handler returned ``output``."""

    attempt_id: UUID
    output: JsonObject = field(default_factory=dict)
    worker_id: str = ""
    token: str | None = None


@dataclass(frozen=True)
class StepFailed:
    """An attempt's handler raised (``retryable=False``: never retry it)."""

    attempt_id: UUID
    error: ErrorInfo
    retryable: bool = True
    worker_id: str = ""
    token: str | None = None


@dataclass(frozen=True)
class CancelRequested:
    """A client asked to cancel the job (``requester``: its validated user, if
    any; ``admin``: whether that user may act on every job)."""

    reason: str = "cancelled by client"
    requester: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class RerunRequested:
    """A client asked to run a failed or timed-out job again from the step that failed."""

    reason: str = "rerun requested"
    requester: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class TimerFired:
    """The sweeper found the job's wake-up time due: handle every deadline passed.

    ``horizon`` is the moment up to which the orchestrator has heard from the
    workers (now, less how far its events queue lags behind): deadlines are
    judged against it, so a backlog of heartbeats and results never makes a
    live worker look lost or a finished step look late. None: now.
    """

    horizon: datetime | None = None


Event = (
    JobSubmitted
    | StepStarted
    | StepProgressed
    | StepHeartbeat
    | StepSucceeded
    | StepFailed
    | CancelRequested
    | RerunRequested
    | TimerFired
)
