"""What the shell must do after a decision: the outputs of ``decide``.

Effects are domain-level; :mod:`segue.service.outbox` turns them into wire
messages that are written to the outbox in the same transaction as the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from segue.engine.state import Job
from segue.protocol import kinds
from segue.protocol.messages import ErrorInfo, JobStatus, JsonObject


@dataclass(frozen=True)
class DispatchStep:
    """Send a task for one attempt to the workers serving ``queue``.

    ``item``/``item_index`` are the map item the attempt runs (None: not a map);
    ``iteration`` counts the runs of a repeated step (1 without ``repeat``).
    """

    job_id: UUID
    workflow: str
    step: str
    queue: str
    attempt: int
    attempt_id: UUID
    priority: int
    params: JsonObject
    inputs: JsonObject
    heartbeat_s: float | None
    timeout_s: float | None
    item: Any = None
    item_index: int | None = None
    iteration: int = 1
    token: str | None = None


@dataclass(frozen=True)
class StopAttempt:
    """Tell the worker running an attempt to stop (cancel, timeout, or a task it
    must not run: of an attempt that ended, or that another worker holds).

    ``worker_id``: only that worker must stop (None: whoever runs it);
    ``token_digest``: proves the stop comes from the orchestrator that holds
    the attempt's token; ``run_id``: only that start of the attempt must stop
    (the answer to a ``started`` that named it).
    """

    job_id: UUID
    attempt_id: UUID
    reason: str
    worker_id: str | None = None
    token_digest: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class NotifyStatus:
    """Tell followers of the job that its status or current step changed."""

    job_id: UUID
    status: JobStatus
    step: str | None
    seq: int = 0


@dataclass(frozen=True)
class NotifyProgress:
    """Tell followers of the job about a step's progress."""

    job_id: UUID
    step: str
    fraction: float
    message: str
    seq: int = 0


@dataclass(frozen=True)
class NotifyResult:
    """Tell followers the job ended; emitted exactly once per run of a job."""

    job_id: UUID
    status: JobStatus
    output: JsonObject | None = None
    error: ErrorInfo | None = None
    seq: int = 0


Notice = NotifyStatus | NotifyProgress | NotifyResult
"""Effects that tell the job's followers something; each carries the job's next
update sequence number (``seq``), so a follower can drop one that arrives late."""

Effect = DispatchStep | StopAttempt | NotifyStatus | NotifyProgress | NotifyResult


@dataclass(frozen=True)
class Record:
    """One entry for the job's append-only history (``type`` is past tense)."""

    type: str
    data: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The outcome of applying one event to one job.

    - ``job``: the new state (None when a submission was rejected, or when an
      event names a job that does not exist: then there is nothing to store).
    - ``effects``: messages to send, in order, after the state is committed.
    - ``records``: history entries to append.
    - ``rejected``: why an invalid message was refused (nothing is stored): a
      submission (``rejection_kind`` says what was wrong) or an event that can
      never apply to the job (e.g. of an attempt it never had).
    - ``ignored``: why a stale or duplicate event changed nothing (it is still
      recorded in ``records`` so the history explains it).
    - ``engine_error``: the engine failed on this event (a bug); the job is as
      it was, so the shell must not try the same timer again at once.
    """

    job: Job | None = None
    effects: tuple[Effect, ...] = ()
    records: tuple[Record, ...] = ()
    rejected: str | None = None
    rejection_kind: str = kinds.INVALID_PARAMETERS
    ignored: str | None = None
    engine_error: bool = False
