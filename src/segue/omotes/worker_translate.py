"""Segue step tasks <-> OMOTES Celery workers: pure translation, no I/O.

Outbound, a :class:`~segue.protocol.messages.StepTask` becomes the Celery task
an OMOTES worker runs (``omotes_sdk/internal/worker/worker.py``,
``wrapped_worker_task``): task name = the step's queue = the OMOTES workflow
type, task id = the attempt id (so every event of the task names its attempt
and Segue's fencing holds), arguments ``(job_id, job_reference, input_esdl,
params_dict)`` with the parameters in the form OMOTES clients put on the wire.

Inbound, the worker's ``TaskProgressUpdate`` and ``TaskResult`` become Segue
worker events with the attempt's token (the conventions shared with the
gateway, ``segue.omotes.translate``):

- START -> ``StepStarted``; the n-th START of one task (the task came back
  after its worker died: acks late, reject on worker lost) is reported
  ``redelivered`` by worker ``celery:<task id>:<n>``, so Segue counts a crash
  per START after the first (:func:`worker_id`);
- progress -> ``StepProgressed``;
- SUCCEEDED -> ``StepSucceeded(output={"output_esdl_ref", "output_esdl_bytes",
  "esdl_messages", "logs"})``: the output ESDL itself is stored apart
  (``omotes_outputs``, :class:`TaskEnd`), before the event is reported, since
  an ESDL of many megabytes fits no Segue message or step output;
- ERROR -> ``StepFailed(retryable=False, error=ErrorInfo(kind="omotes_task_error",
  message=<logs>, details=<JSON {"esdl_messages": [...]}>))``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from segue.omotes.celery_wire import AmqpMessage, task_message
from segue.omotes.store import OmotesInput, OmotesOutput
from segue.omotes.translate import TASK_ERROR_KIND, OutputEsdlRef
from segue.omotes.wire.omotes_wire_pb2 import EsdlMessage, TaskProgressUpdate, TaskResult
from segue.protocol.codec import encode
from segue.protocol.messages import (
    MAX_ERROR_DETAILS_CHARS,
    CancelAttempt,
    ErrorInfo,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    StepTask,
    WorkerEvent,
)
from segue.protocol.text import shorten
from segue.protocol.tokens import token_digest
from segue.workflows.model import (
    DatetimeParameter,
    DurationParameter,
    FloatParameter,
    IntegerParameter,
    Parameter,
    Workflow,
)
from segue.workflows.timevalues import TimeValueError, parse_datetime, parse_duration

OUTPUT_TOO_LARGE_KIND = "omotes_output_too_large"
"""``ErrorInfo.kind`` of a task whose result does not fit in a Segue event."""
MAX_PROGRESS_MESSAGE_CHARS = 2000
"""``StepProgressed.message`` holds at most this."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What the bridge keeps of a Celery task it dispatched (``omotes_tasks``)."""

    attempt_id: UUID
    job_id: UUID
    task_type: str
    token: str | None
    heartbeat_s: float | None
    starts: int = 0

    @property
    def worker_id(self) -> str:
        """The worker this task's current run reports as (see :func:`worker_id`)."""
        return worker_id(self.attempt_id, self.starts)


def worker_id(attempt_id: UUID, starts: int) -> str:
    """``celery:<task id>:<n>``: the n-th run of the task (from 1).

    Each START is a new "worker" to Segue: a redelivered task that starts again
    is a crash of the run before, which Segue counts (and fails the job after
    ``max_crashes``), as it does when a redelivered Segue task starts on
    another worker.
    """
    return f"celery:{attempt_id}:{max(starts, 1)}"


# --- Segue task -> Celery task -------------------------------------------------------------


def celery_task(
    task: StepTask,
    inputs: OmotesInput | None,
    workflow: Workflow | None,
    priority: int,
    origin: str,
) -> AmqpMessage:
    """The Celery task of ``task`` (``priority``: the Segue task's, 0..9).

    ``inputs``: what the gateway stored for the job (None for a job submitted
    with Segue's own client: the worker gets ``""`` as its ESDL and ``None`` as
    its reference). ``workflow``: the definition of the task's workflow, to put
    parameters in their OMOTES form (None: they are passed as they are).
    """
    args = (
        str(task.job_id),
        None if inputs is None else inputs.job_reference,
        "" if inputs is None else inputs.esdl,
        worker_params(workflow, task.params),
    )
    return task_message(task.queue, str(task.attempt_id), args, priority, origin)


def worker_params(workflow: Workflow | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """Job parameters as an OMOTES client puts them on the wire (``google.protobuf.Struct``,
    ``omotes_sdk/workflow_type.py`` ``to_pb_value``), which is how OMOTES workers read them:

    - integers and floats as floats (a Struct has no integers; the worker's
      float parameters refuse an int);
    - datetimes as POSIX timestamps (Segue keeps ISO 8601 text);
    - durations as seconds (Segue keeps ISO 8601 text or seconds);
    - strings, booleans and anything undeclared as they are.

    A value that does not read as its type is passed as it is.
    """
    by_name: dict[str, Parameter] = (
        {} if workflow is None else {p.name: p for p in workflow.parameters}
    )
    return {key: _worker_value(by_name.get(key), value) for key, value in params.items()}


def _worker_value(parameter: Parameter | None, value: Any) -> Any:
    try:
        match parameter:
            case IntegerParameter() | FloatParameter() if _is_number(value):
                return float(value)
            case DatetimeParameter():
                return parse_datetime(value).timestamp()
            case DurationParameter():
                return parse_duration(value).total_seconds()
    except TimeValueError:
        pass
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- Celery worker events -> Segue events --------------------------------------------------


def started(record: TaskRecord, now: datetime) -> StepStarted:
    """The Segue ``started`` of the record's current run (its ``starts``-th START)."""
    return StepStarted(**event_fields(record, now), redelivered=record.starts > 1)


def progressed(update: TaskProgressUpdate, record: TaskRecord, now: datetime) -> StepProgressed:
    """A worker's progress report; the fraction is kept within 0..1."""
    fraction = update.progress if math.isfinite(update.progress) else 0.0
    return StepProgressed(
        **event_fields(record, now),
        fraction=min(1.0, max(0.0, fraction)),
        message=shorten(update.message, MAX_PROGRESS_MESSAGE_CHARS),
    )


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """What a worker's result becomes: the Segue event, and the output ESDL to store
    before the event is reported (None: there is none)."""

    event: WorkerEvent
    output: OmotesOutput | None = None


def finished(result: TaskResult, record: TaskRecord, now: datetime, max_bytes: int) -> TaskEnd:
    """A worker's result: ``StepSucceeded`` or ``StepFailed`` (never retried: OMOTES
    does not retry a task that failed either).

    A succeeded task's output ESDL becomes a row of ``omotes_outputs`` (the
    UTF-8 bytes the worker sent, keyed by the record's job and attempt) and the
    step output refers to it (:class:`~segue.omotes.translate.OutputEsdlRef`).
    A result whose event would still exceed ``max_bytes`` (the largest message
    the orchestrator accepts: logs and ESDL messages travel in the event) fails
    the step instead, saying what to raise.
    """
    messages = esdl_message_dicts(result.esdl_messages)
    event: WorkerEvent
    stored: OmotesOutput | None = None
    if result.result_type == TaskResult.SUCCEEDED:
        output: dict[str, Any] = {"output_esdl": None}
        if result.HasField("output_esdl"):
            stored = OmotesOutput(record.job_id, record.attempt_id, result.output_esdl.encode())
            output = OutputEsdlRef(record.attempt_id, len(stored.esdl)).as_output()
        output.update(esdl_messages=messages, logs=result.logs)
        event = StepSucceeded(**event_fields(record, now), output=output)
    else:
        error = ErrorInfo(
            kind=TASK_ERROR_KIND, message=result.logs, details=error_details(messages)
        )
        event = StepFailed(**event_fields(record, now), error=error, retryable=False)
    size = len(encode(event))
    if size <= max_bytes:
        return TaskEnd(event, stored)
    reason = (
        f"the result of OMOTES task {record.task_type} is {size} bytes without its output "
        f"ESDL (logs and ESDL messages), more than the {max_bytes} bytes a Segue event may "
        "have: raise SEGUE_MAX_MESSAGE_BYTES (and the workflow's max_output_bytes) to accept it"
    )
    error = ErrorInfo(kind=OUTPUT_TOO_LARGE_KIND, message=reason)
    return TaskEnd(StepFailed(**event_fields(record, now), error=error, retryable=False))


def esdl_message_dicts(messages: Iterable[EsdlMessage]) -> list[dict[str, Any]]:
    """ESDL messages as the step output carries them (an unset object id is None)."""
    return [
        {
            "technical_message": message.technical_message,
            "severity": EsdlMessage.Severity.Name(message.severity),
            "esdl_object_id": (
                message.esdl_object_id if message.HasField("esdl_object_id") else None
            ),
        }
        for message in messages
    ]


def error_details(messages: list[dict[str, Any]]) -> str:
    """``{"esdl_messages": [...]}`` as JSON that fits ``ErrorInfo.details`` whole (cut
    text would not be JSON any more): the messages that fit, in order, and
    how many were left out."""
    kept = list(messages)
    while True:
        details: dict[str, Any] = {"esdl_messages": kept}
        if len(kept) < len(messages):
            details["esdl_messages_left_out"] = len(messages) - len(kept)
        text = json.dumps(details)
        if len(text) <= MAX_ERROR_DETAILS_CHARS or not kept:
            return text
        kept = kept[: len(kept) // 2]


def event_fields(record: TaskRecord, now: datetime) -> dict[str, Any]:
    """The fields every Segue event about the record's task carries: its attempt, the
    run reporting (:attr:`TaskRecord.worker_id`), the attempt's token, the send time."""
    return {
        "job_id": record.job_id,
        "attempt_id": record.attempt_id,
        "worker_id": record.worker_id,
        "sent_at": now,
        "token": record.token,
    }


# --- Segue stops -> Celery revokes ---------------------------------------------------------


def stop_is_forged(record: TaskRecord, command: CancelAttempt) -> bool:
    """Whether a stop of the record's attempt lacks the digest of the attempt's token.

    As a Segue worker does: anyone may publish a stop, only the orchestrator
    that issued the task knows the token, so a stop without its digest is
    ignored (an attempt without a token obeys any).
    """
    return record.token is not None and command.token_digest != token_digest(record.token)
