"""Pydantic models of every message body Segue sends or receives.

Each body is a JSON object with ``type`` (which model) and ``schema_version``.
Models are frozen and reject unknown fields, so a typo in a producer is an
error at the consumer instead of silently dropped data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from segue.protocol.names import MAX_PRIORITY, UPDATES_KEY_PATTERN
from segue.protocol.text import shorten, shorten_start

SCHEMA_VERSION = 1
JsonObject = dict[str, Any]


class JobStatus(StrEnum):
    """Lifecycle of a job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self not in _LIVE_JOB_STATUSES


class AttemptStatus(StrEnum):
    """Lifecycle of one attempt at running a step."""

    SCHEDULED = "scheduled"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the attempt is over."""
        return self not in _LIVE_ATTEMPT_STATUSES


# Sets, not tuples of class attributes: the engine asks this for every attempt it looks at.
_LIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
_LIVE_ATTEMPT_STATUSES = frozenset(
    {AttemptStatus.SCHEDULED, AttemptStatus.DISPATCHED, AttemptStatus.RUNNING}
)


class Message(BaseModel):
    """Base of every message body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION


MAX_ERROR_KIND_CHARS = 200
MAX_ERROR_MESSAGE_CHARS = 4000
MAX_ERROR_DETAILS_CHARS = 16000


def _bounded(limit: int, cut: Callable[[str, int], str] = shorten) -> AfterValidator:
    """Cut a longer text to ``limit`` characters, saying so (see :mod:`segue.protocol.text`)."""
    return AfterValidator(lambda text: cut(text, limit))


class ErrorInfo(BaseModel):
    """Why something failed, as told to users.

    Its texts are bounded once, when it is decoded or built, since it is stored
    and sent several times after that: a longer text is cut, never refused (a
    worker's result must not be dead-lettered for a long traceback), and says
    how much was left out. ``details`` keeps its end, where a traceback names
    the error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Annotated[str, _bounded(MAX_ERROR_KIND_CHARS)] = Field(
        description="error class: a handler's exception type, or a Segue reason"
        f" (at most {MAX_ERROR_KIND_CHARS} characters)"
    )
    message: Annotated[str, _bounded(MAX_ERROR_MESSAGE_CHARS)] = Field(
        description=f"at most {MAX_ERROR_MESSAGE_CHARS} characters"
    )
    step: Annotated[str, _bounded(MAX_ERROR_KIND_CHARS)] | None = None
    details: Annotated[str, _bounded(MAX_ERROR_DETAILS_CHARS, shorten_start)] | None = Field(
        default=None,
        description=f"e.g. a traceback: its last {MAX_ERROR_DETAILS_CHARS} characters at most",
    )


# --- commands: clients -> orchestrator -------------------------------------------------


class SubmitJob(Message):
    """Start a job. Submitting the same ``job_id`` twice yields one job."""

    type: Literal["submit_job"] = "submit_job"
    job_id: UUID
    workflow: str = Field(min_length=1, max_length=200)
    params: JsonObject = Field(default_factory=dict)
    priority: int = Field(default=5, ge=0, le=MAX_PRIORITY)
    reference: str | None = Field(default=None, max_length=500)
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="the job's own time limit from submission (the workflow's applies too)",
    )
    updates_key: str | None = Field(
        default=None,
        pattern=UPDATES_KEY_PATTERN.pattern,
        description="routing key the submitter's queue is bound with on the updates "
        "exchange: every update of the job is also routed there (CC)",
    )


class CancelJob(Message):
    """Ask for a job to end ``cancelled``."""

    type: Literal["cancel_job"] = "cancel_job"
    job_id: UUID
    reason: str = Field(default="cancelled by client", max_length=1000)


class RetryJob(Message):
    """Run a failed or timed-out job again from the step that failed.

    Answered on ``reply_to`` (if set) with the job as it is after the request,
    or an :class:`ErrorReply` saying why it was refused.
    """

    type: Literal["retry_job"] = "retry_job"
    job_id: UUID
    reason: str = Field(default="retry requested", max_length=1000)


class GetJob(Message):
    """Query a job's current state and history; answered on ``reply_to``."""

    type: Literal["get_job"] = "get_job"
    job_id: UUID
    include_history: bool = True
    include_queue: bool = Field(
        default=False,
        description="while a step of the job waits for a worker, also estimate where it "
        "stands in its queue (JobView.queue: a few queries, made only when asked)",
    )


class ListWorkflows(Message):
    """Query the workflows this orchestrator runs; answered on ``reply_to``."""

    type: Literal["list_workflows"] = "list_workflows"


Command = Annotated[
    SubmitJob | CancelJob | RetryJob | GetJob | ListWorkflows,
    Field(discriminator="type"),
]


# --- events: workers -> orchestrator ---------------------------------------------------


class WorkerEvent(Message):
    """Fields every worker event carries: which attempt it is about."""

    job_id: UUID
    attempt_id: UUID
    worker_id: str = Field(default="", max_length=200)
    sent_at: datetime | None = None
    token: str | None = Field(
        default=None, max_length=64, description="the attempt's token, from its task"
    )


class StepStarted(WorkerEvent):
    """A worker took the task and is about to run the handler."""

    type: Literal["step_started"] = "step_started"
    redelivered: bool = Field(
        default=False, description="the broker had delivered this task before"
    )
    run_id: str | None = Field(
        default=None,
        max_length=64,
        description="names this start of the attempt on this worker: a stop answering "
        "this report names it too, so it cannot stop a later start of the same attempt",
    )


class StepProgressed(WorkerEvent):
    """The handler reported progress."""

    type: Literal["step_progress"] = "step_progress"
    fraction: float = Field(ge=0.0, le=1.0)
    message: str = Field(default="", max_length=2000)


class StepHeartbeat(WorkerEvent):
    """The handler is still running."""

    type: Literal["step_heartbeat"] = "step_heartbeat"


class StepSucceeded(WorkerEvent):
    """The handler returned; ``output`` is what it returned."""

    type: Literal["step_succeeded"] = "step_succeeded"
    output: JsonObject = Field(default_factory=dict)


class StepFailed(WorkerEvent):
    """The handler raised, or the worker refused the task."""

    type: Literal["step_failed"] = "step_failed"
    error: ErrorInfo
    retryable: bool = True


Event = Annotated[
    StepStarted | StepProgressed | StepHeartbeat | StepSucceeded | StepFailed,
    Field(discriminator="type"),
]


# --- orchestrator -> workers -----------------------------------------------------------


class StepTask(Message):
    """One attempt at one step of one job."""

    type: Literal["step_task"] = "step_task"
    job_id: UUID
    workflow: str
    step: str
    queue: str
    attempt: int = Field(ge=1)
    attempt_id: UUID
    params: JsonObject = Field(default_factory=dict)
    inputs: JsonObject = Field(
        default_factory=dict,
        description="the step's 'input' values by name; without 'input', the outputs of "
        "earlier steps by step name",
    )
    heartbeat_s: float | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    item: Any = Field(default=None, description="the map item this attempt runs")
    item_index: int | None = Field(
        default=None, ge=0, description="the index of the map item (None: not a map step)"
    )
    iteration: int = Field(
        default=1, ge=1, description="the run of a repeated step, from 1 (attempts restart at 1)"
    )
    token: str | None = Field(
        default=None,
        max_length=64,
        description="secret of this attempt: every report about it must carry it",
    )


class CancelAttempt(Message):
    """Tell the worker running ``attempt_id`` to stop (or not to start it).

    ``worker_id``: only that worker must stop (None: whichever holds it).
    ``token_digest``: SHA-256 (hex, 32 characters) of the attempt's token, so
    a worker obeys only stops from whoever issued its task.
    ``run_id``: only that start of the attempt must stop (the answer to a
    ``started`` report that named it; None: any).
    """

    type: Literal["cancel_attempt"] = "cancel_attempt"
    job_id: UUID
    attempt_id: UUID
    reason: str
    worker_id: str | None = Field(default=None, max_length=200)
    token_digest: str | None = Field(default=None, max_length=64)
    run_id: str | None = Field(default=None, max_length=64)


# --- orchestrator -> clients -----------------------------------------------------------

SEQ_DESCRIPTION = (
    "the job's update sequence number: a follower drops an update whose seq is not "
    "above the last one it saw of the job (None: a refused submission)"
)


class JobStatusChanged(Message):
    """A job changed status or moved to another step."""

    type: Literal["job_status"] = "job_status"
    job_id: UUID
    status: JobStatus
    step: str | None = None
    at: datetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DESCRIPTION)


class JobProgressed(Message):
    """A running step reported progress."""

    type: Literal["job_progress"] = "job_progress"
    job_id: UUID
    step: str
    fraction: float = Field(ge=0.0, le=1.0)
    message: str = ""
    at: datetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DESCRIPTION)


class JobFinished(Message):
    """The job reached a terminal status; sent once per run of a job."""

    type: Literal["job_result"] = "job_result"
    job_id: UUID
    status: JobStatus
    output: JsonObject | None = None
    error: ErrorInfo | None = None
    at: datetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DESCRIPTION)


Update = Annotated[
    JobStatusChanged | JobProgressed | JobFinished,
    Field(discriminator="type"),
]


# --- query replies ---------------------------------------------------------------------


class AttemptView(BaseModel):
    """One step attempt as shown to users."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt_id: UUID
    step: str
    number: int
    run: int = 1
    status: AttemptStatus
    worker_id: str | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: float | None = None
    progress_message: str | None = None
    error: ErrorInfo | None = None
    item_index: int | None = Field(default=None, description="the map item it ran (0-based)")
    iteration: int = Field(default=1, description="the run of a repeated step (from 1)")


class HistoryEntry(BaseModel):
    """One row of a job's append-only history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    type: str
    at: datetime
    data: JsonObject = Field(default_factory=dict)


class QueueEstimate(BaseModel):
    """Where a job's waiting step stands in its task queue, estimated when asked.

    An estimate, not a promise: it assumes the queue drains as fast as it did
    lately, and a task of higher priority submitted later still goes first
    (see ``docs/operator.md``, "Queue position and ETA").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    queue: str
    position: int = Field(
        ge=1, description="1: the next task the queue's workers get (of the job's first task)"
    )
    waiting: int = Field(ge=0, description="tasks waiting in the queue, this job's included")
    tasks: int = Field(default=1, ge=1, description="tasks of this job waiting (map items)")
    busy: int = Field(
        ge=0, description="attempts of the queue running and heard from lately (workers' slots)"
    )
    workers: int = Field(
        ge=0, description="distinct workers that ran or finished a task of the queue lately"
    )
    step_duration_s: float | None = Field(
        default=None, description="median run time of the step's recent attempts (None: none)"
    )
    samples: int = Field(default=0, ge=0, description="finished attempts that median is of")
    due_in_s: float = Field(
        default=0.0, ge=0, description="seconds until a retry waiting for its backoff is queued"
    )
    eta_s: float | None = Field(
        default=None,
        description="estimated seconds from ``at`` until the job's waiting tasks of the step "
        "are done (None: no recent run to go by, or no worker seen)",
    )
    at: datetime = Field(description="when the estimate was made")


class JobView(BaseModel):
    """A job's state as stored by the orchestrator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: UUID
    workflow: str
    workflow_version: str
    workflow_hash: str
    status: JobStatus
    run: int = Field(default=1, description="1 for the first run; each rerun adds one")
    priority: int
    reference: str | None
    owner: str | None = Field(default=None, description="the user that submitted it")
    params: JsonObject
    current_step: str | None
    outputs: JsonObject
    error: ErrorInfo | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    attempts: list[AttemptView] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    queue: QueueEstimate | None = Field(
        default=None,
        description="where its waiting step stands in its queue (asked with include_queue)",
    )


class JobReply(Message):
    """Answer to :class:`GetJob`; ``job`` is None when no such job exists."""

    type: Literal["job_reply"] = "job_reply"
    job_id: UUID
    job: JobView | None


class WorkflowInfo(BaseModel):
    """A workflow as offered to clients, with its parameters' JSON Schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    version: str
    content_hash: str
    steps: list[str]
    parameters_schema: JsonObject


class WorkflowsReply(Message):
    """Answer to :class:`ListWorkflows`."""

    type: Literal["workflows_reply"] = "workflows_reply"
    workflows: list[WorkflowInfo]


class ErrorReply(Message):
    """Answer to a query that could not be served."""

    type: Literal["error_reply"] = "error_reply"
    error: ErrorInfo


Reply = Annotated[JobReply | WorkflowsReply | ErrorReply, Field(discriminator="type")]
