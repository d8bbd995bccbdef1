"""OMOTES wire messages <-> Segue messages: pure translation, no I/O.

Inbound (an OMOTES client -> Segue):

- ``JobSubmission`` -> :class:`Submission`: a Segue ``SubmitJob`` whose job id
  is the OMOTES uuid, plus what is stored apart (the input ESDL and the full
  job reference); or a :class:`Refusal`.
- ``JobDelete`` -> ``CancelJob``.

Outbound (Segue updates -> the OMOTES client's per-job queues):
:class:`UpdateTranslator` turns ``JobStatusChanged`` / ``JobProgressed`` /
``JobFinished`` into ``JobStatusUpdate RUNNING`` (once), ``JobProgressUpdate``
and exactly one ``JobResult``, dropping stale updates by ``seq``.

The step output and error conventions shared with the Celery bridge
(``segue.omotes.bridge``): a succeeded step's output is
``{"output_esdl_ref": <attempt id>, "output_esdl_bytes": int, "esdl_messages":
[...], "logs": str}``, the output ESDL itself being stored apart in
``omotes_outputs`` under the job and that attempt (:class:`OutputEsdlRef`); a
step without output ESDL, or one run by another kind of worker, has
``{"output_esdl": str | None, "esdl_messages": [...], "logs": str}`` instead. A
task that failed is reported as ``ErrorInfo(kind="omotes_task_error",
message=<logs>, details=<JSON {"esdl_messages": [...]}>)``; each ESDL message is
``{"technical_message": str, "severity": "DEBUG"|"INFO"|"WARNING"|"ERROR",
"esdl_object_id": str | None}``.

A ``JobResult`` of a stored output ESDL leaves here without it
(:attr:`ToClient.esdl_ref`): the gateway reads the ESDL and completes it with
:func:`with_output_esdl`, which answers ``ERROR`` when the ESDL is not stored
(any more) or not what the reference says.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtobufMessage
from pydantic import ValidationError

from segue.omotes.names import JobQueueKind, job_queue
from segue.omotes.wire.omotes_wire_pb2 import (
    EsdlMessage,
    JobDelete,
    JobPriority,
    JobProgressUpdate,
    JobResult,
    JobStatusUpdate,
    JobSubmission,
)
from segue.protocol.messages import (
    CancelJob,
    ErrorInfo,
    JobFinished,
    JobProgressed,
    JobStatus,
    JobStatusChanged,
    SubmitJob,
    Update,
)
from segue.protocol.text import shorten
from segue.workflows.loader import Catalog
from segue.workflows.model import DatetimeParameter, IntegerParameter, Parameter, Workflow

PRIORITIES: Mapping[int, int] = {JobPriority.LOW: 2, JobPriority.MEDIUM: 4, JobPriority.HIGH: 6}
"""OMOTES job priority -> Segue priority (OMOTES gives Celery the same 2 / 4 / 6)."""
DEFAULT_PRIORITY = PRIORITIES[JobPriority.MEDIUM]
"""An unset (or unknown) priority is MEDIUM, as in OMOTES."""
DELETE_REASON = "deleted by the OMOTES client"
TASK_ERROR_KIND = "omotes_task_error"
"""``ErrorInfo.kind`` of an OMOTES task that failed (set by the Celery bridge)."""
MAX_REFERENCE_CHARS = 500
"""Longest ``SubmitJob.reference``; the whole OMOTES job reference is stored apart."""
DEFAULT_FOLLOW_LIMIT = 100_000
"""Jobs whose update state :class:`UpdateTranslator` remembers (the least recently
updated are forgotten first)."""

OUTPUT_ESDL_REF = "output_esdl_ref"
OUTPUT_ESDL_BYTES = "output_esdl_bytes"
OUTPUT_MISSING_KIND = "omotes_output_missing"
"""What a ``JobResult ERROR`` of a success whose stored output ESDL is gone says first."""
OUTPUT_UNREADABLE_KIND = "omotes_output_unreadable"
"""What a ``JobResult ERROR`` of a success whose stored output ESDL cannot be used says first."""

OmotesUpdate = JobStatusUpdate | JobProgressUpdate | JobResult


@dataclass(frozen=True, slots=True)
class OutputEsdlRef:
    """Where the Celery bridge stored a step's output ESDL: the row of ``omotes_outputs``
    of the job and ``attempt_id``, ``size`` bytes of UTF-8."""

    attempt_id: UUID
    size: int

    def as_output(self) -> dict[str, Any]:
        """The reference as a step output carries it."""
        return {OUTPUT_ESDL_REF: str(self.attempt_id), OUTPUT_ESDL_BYTES: self.size}

    @classmethod
    def of(cls, output: Mapping[str, Any]) -> OutputEsdlRef | str | None:
        """The reference ``output`` carries; None when it carries none, the reason when
        it is not a valid one."""
        if OUTPUT_ESDL_REF not in output:
            return None
        attempt_id = _uuid(str(output[OUTPUT_ESDL_REF]))
        size = output.get(OUTPUT_ESDL_BYTES)
        if attempt_id is None or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            shown = {k: output.get(k) for k in (OUTPUT_ESDL_REF, OUTPUT_ESDL_BYTES)}
            return f"the step output's reference to its output ESDL is not valid: {shown}"
        return cls(attempt_id, size)


@dataclass(frozen=True, slots=True)
class ToClient:
    """One message for an OMOTES client's per-job queue (``routing_key`` = its name).

    ``esdl_ref``: the message is a ``JobResult`` whose output ESDL is stored
    apart; it must be completed (:func:`with_output_esdl`) before it is sent.
    """

    routing_key: str
    message: OmotesUpdate
    esdl_ref: OutputEsdlRef | None = None

    def body(self) -> bytes:
        """The protobuf bytes, as the OMOTES client parses them."""
        return self.message.SerializeToString()


@dataclass(frozen=True, slots=True)
class Submission:
    """What one ``JobSubmission`` becomes: the command, and the inputs stored apart."""

    command: SubmitJob
    esdl: str
    job_reference: str | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message that cannot become a Segue command; ``answer`` tells the client why
    (None: there is no job to answer, e.g. the body named no valid uuid)."""

    reason: str
    answer: ToClient | None = None


class WireError(ValueError):
    """A body is not the protobuf message it should be."""


def parse(message_type: type[ProtobufMessage], body: bytes) -> Any:
    """``body`` parsed as ``message_type``; :class:`WireError` when it cannot be."""
    message = message_type()
    try:
        message.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise WireError(f"not a {message_type.__name__} (invalid protobuf: {exc})") from exc
    return message


# --- inbound ---------------------------------------------------------------------------


def read_submission(body: bytes, catalog: Catalog, updates_key: str) -> Submission | Refusal:
    """The Segue submission a ``JobSubmission`` body stands for.

    ``catalog``: the workflows served now (to read the wire values of their
    parameters, see :func:`wire_params`; an unknown workflow is left to the
    orchestrator to refuse, as it refuses any).
    """
    try:
        submission: JobSubmission = parse(JobSubmission, body)
    except WireError as exc:
        return Refusal(str(exc))
    job_id = _uuid(submission.uuid)
    if job_id is None:
        return Refusal(f"JobSubmission without a valid uuid (got {submission.uuid[:100]!r})")
    if not submission.workflow_type:
        # The SDK always sends one: this is some other message (a JobDelete reads the same).
        return Refusal(f"JobSubmission {job_id} names no workflow_type: not a submission")
    reference = submission.job_reference if submission.HasField("job_reference") else None
    loaded = catalog.get(submission.workflow_type)
    workflow = None if loaded is None else loaded.workflow
    try:
        params = json_format.MessageToDict(submission.params_dict)
    except (ValueError, json_format.Error) as exc:  # NaN or Infinity: no JSON number
        reason = f"invalid submission: params_dict is no JSON object ({exc})"
        return Refusal(reason, error_result(job_id, reason))
    try:
        command = SubmitJob(
            job_id=job_id,
            workflow=submission.workflow_type,
            params=wire_params(workflow, params),
            priority=priority_of(submission),
            reference=None if reference is None else shorten(reference, MAX_REFERENCE_CHARS),
            timeout_s=timeout_of(submission),
            updates_key=updates_key,
        )
    except ValidationError as exc:
        reason = f"invalid submission: {_validation_reasons(exc)}"
        return Refusal(reason, error_result(job_id, reason))
    return Submission(command, submission.esdl, reference)


def read_delete(body: bytes) -> CancelJob | Refusal:
    """The ``CancelJob`` a ``JobDelete`` body stands for."""
    try:
        delete: JobDelete = parse(JobDelete, body)
    except WireError as exc:
        return Refusal(str(exc))
    job_id = _uuid(delete.uuid)
    if job_id is None:
        return Refusal(f"JobDelete without a valid uuid (got {delete.uuid[:100]!r})")
    return CancelJob(job_id=job_id, reason=DELETE_REASON)


def priority_of(submission: JobSubmission) -> int:
    """The Segue priority of an OMOTES job: LOW 2, MEDIUM (or unset) 4, HIGH 6."""
    if not submission.HasField("job_priority"):
        return DEFAULT_PRIORITY
    return PRIORITIES.get(submission.job_priority, DEFAULT_PRIORITY)


def timeout_of(submission: JobSubmission) -> float | None:
    """The job's own time limit in seconds; None when unset (or 0: no limit)."""
    if not submission.HasField("timeout_ms") or submission.timeout_ms == 0:
        return None
    return submission.timeout_ms / 1000


def wire_params(workflow: Workflow | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """The OMOTES client's parameter values as Segue's parameter checks read them.

    The SDK sends every number as a float and a datetime as its POSIX
    timestamp (``datetime.timestamp()``), a duration as float seconds:

    - an integer parameter's integral float (``7.0``) becomes an int;
    - a datetime parameter's number becomes that moment in ISO 8601, UTC
      (``2030-12-31T23:00:00+00:00``);
    - everything else (durations in seconds included) is taken as it is.

    A value that does not fit stays as it is, so the orchestrator refuses the
    job saying why.
    """
    by_name: dict[str, Parameter] = (
        {} if workflow is None else {p.name: p for p in workflow.parameters}
    )
    return {key: _wire_value(by_name.get(key), value) for key, value in params.items()}


def _wire_value(parameter: Parameter | None, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(parameter, IntegerParameter) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(parameter, DatetimeParameter) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return value
    return value


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _validation_reasons(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'submission'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


# --- outbound --------------------------------------------------------------------------


def to_client(job_id: UUID, kind: JobQueueKind, message: OmotesUpdate) -> ToClient:
    """``message`` addressed to the client's ``jobs.<uuid>.<kind>`` queue."""
    return ToClient(job_queue(job_id, kind), message)


def running(job_id: UUID) -> ToClient:
    """``JobStatusUpdate RUNNING``."""
    return to_client(
        job_id, "status", JobStatusUpdate(uuid=str(job_id), status=JobStatusUpdate.RUNNING)
    )


def error_result(job_id: UUID, logs: str) -> ToClient:
    """``JobResult ERROR`` with ``logs``."""
    return to_client(
        job_id, "result", JobResult(uuid=str(job_id), result_type=JobResult.ERROR, logs=logs)
    )


def result_messages(finished: JobFinished) -> list[ToClient]:
    """What a job's result becomes: one ``JobResult``, after ``JobStatusUpdate
    CANCELLED`` for a cancelled job (the client drops its queues on the result)."""
    job_id = finished.job_id
    match finished.status:
        case JobStatus.SUCCEEDED:
            return [succeeded_result(job_id, finished.output or {})]
        case JobStatus.CANCELLED:
            status = JobStatusUpdate(uuid=str(job_id), status=JobStatusUpdate.CANCELLED)
            result = JobResult(
                uuid=str(job_id),
                result_type=JobResult.CANCELLED,
                logs=finished.error.message if finished.error else "",
            )
            return [to_client(job_id, "status", status), to_client(job_id, "result", result)]
        case JobStatus.TIMED_OUT:
            result = JobResult(
                uuid=str(job_id),
                result_type=JobResult.TIMEOUT,
                logs=finished.error.message if finished.error else "",
            )
            return [to_client(job_id, "result", result)]
        case _:
            return [to_client(job_id, "result", failed(job_id, finished.error))]


def succeeded_result(job_id: UUID, output: Mapping[str, Any]) -> ToClient:
    """The result of a job that succeeded with ``output`` (the bridge's convention): to
    be completed with its stored output ESDL when ``output`` refers to one."""
    ref = OutputEsdlRef.of(output)
    if isinstance(ref, str):
        return to_client(
            job_id, "result", _output_error(job_id, OUTPUT_UNREADABLE_KIND, ref, output)
        )
    return ToClient(job_queue(job_id, "result"), succeeded(job_id, output), ref)


def succeeded(job_id: UUID, output: Mapping[str, Any]) -> JobResult:
    """``JobResult SUCCEEDED`` from a step output of the bridge's convention (without
    the output ESDL when it is stored apart)."""
    result = JobResult(
        uuid=str(job_id),
        result_type=JobResult.SUCCEEDED,
        logs=_text(output.get("logs")),
        esdl_messages=esdl_messages(output.get("esdl_messages")),
    )
    output_esdl = output.get("output_esdl")
    if isinstance(output_esdl, str):
        result.output_esdl = output_esdl
    return result


def with_output_esdl(message: ToClient, stored: bytes | None) -> ToClient:
    """``message`` (a result waiting for its output ESDL, :attr:`ToClient.esdl_ref`)
    with the ESDL ``stored`` under its reference (None: there is no such row).

    A row that is gone, or does not hold what the reference says, makes the
    result ``ERROR``, saying why, with the task's logs and ESDL messages: the
    client is told, never left waiting.
    """
    ref = message.esdl_ref
    if ref is None or not isinstance(message.message, JobResult):
        return message
    result = message.message
    job_id = UUID(result.uuid)
    what = f"the output ESDL of job {job_id} (attempt {ref.attempt_id}, {ref.size} bytes)"
    if stored is None:
        reason = (
            f"{what} is no longer stored in omotes_outputs: it is deleted with its job, by "
            "an OMOTES JobDelete or by retention"
        )
        return to_client(job_id, "result", _result_error(result, OUTPUT_MISSING_KIND, reason))
    if len(stored) != ref.size:
        reason = f"{what} is stored with {len(stored)} bytes instead"
        return to_client(job_id, "result", _result_error(result, OUTPUT_UNREADABLE_KIND, reason))
    try:
        text = stored.decode()
    except UnicodeDecodeError as exc:
        reason = f"{what} is stored as no UTF-8 text ({exc})"
        return to_client(job_id, "result", _result_error(result, OUTPUT_UNREADABLE_KIND, reason))
    complete = JobResult()
    complete.CopyFrom(result)
    complete.output_esdl = text
    return to_client(job_id, "result", complete)


def output_unreadable(message: ToClient, reason: str) -> ToClient:
    """``message`` (a result waiting for its output ESDL) as ``JobResult ERROR``: its
    output ESDL could not be read, for ``reason``."""
    if not isinstance(message.message, JobResult):
        return message
    result = message.message
    what = "the output ESDL could not be read from omotes_outputs"
    error = _result_error(result, OUTPUT_UNREADABLE_KIND, f"{what}: {reason}")
    return to_client(UUID(result.uuid), "result", error)


def _result_error(result: JobResult, kind: str, reason: str) -> JobResult:
    """``JobResult ERROR`` saying ``kind: reason``, then the succeeded ``result``'s logs,
    with its ESDL messages."""
    logs = f"{kind}: {reason}"
    if result.logs:
        logs += f"\n{result.logs}"
    return JobResult(
        uuid=result.uuid,
        result_type=JobResult.ERROR,
        logs=logs,
        esdl_messages=list(result.esdl_messages),
    )


def _output_error(job_id: UUID, kind: str, reason: str, output: Mapping[str, Any]) -> JobResult:
    return _result_error(succeeded(job_id, output), kind, reason)


def failed(job_id: UUID, error: ErrorInfo | None) -> JobResult:
    """``JobResult ERROR`` for a failed job: a task's own logs and ESDL messages, or
    Segue's reason (e.g. a refused submission: why, parameter by parameter)."""
    if error is None:
        return JobResult(uuid=str(job_id), result_type=JobResult.ERROR, logs="the job failed")
    if error.kind == TASK_ERROR_KIND:
        details = _json_object(error.details)
        return JobResult(
            uuid=str(job_id),
            result_type=JobResult.ERROR,
            logs=error.message,
            esdl_messages=esdl_messages(details.get("esdl_messages")),
        )
    logs = f"{error.kind}: {error.message}"
    if error.details:
        logs += f"\n{error.details}"
    return JobResult(uuid=str(job_id), result_type=JobResult.ERROR, logs=logs)


def esdl_messages(raw: Any) -> list[EsdlMessage]:
    """ESDL messages of the bridge's convention; anything else in the list is skipped."""
    if not isinstance(raw, list):
        return []
    messages = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        message = EsdlMessage(
            technical_message=_text(item.get("technical_message")),
            severity=_severity(item.get("severity")),
        )
        object_id = item.get("esdl_object_id")
        if isinstance(object_id, str):
            message.esdl_object_id = object_id
        messages.append(message)
    return messages


def _severity(raw: Any) -> EsdlMessage.Severity.ValueType:
    """A severity by name (any case) or number; INFO when it is neither."""
    if isinstance(raw, str):
        try:
            return EsdlMessage.Severity.Value(raw.upper())
        except ValueError:
            return EsdlMessage.INFO
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in EsdlMessage.Severity.values():
        return cast("EsdlMessage.Severity.ValueType", raw)
    return EsdlMessage.INFO


def _text(raw: Any) -> str:
    return raw if isinstance(raw, str) else ""


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class _Followed:
    """What the translator remembers of one job."""

    last_seq: int | None = None
    running_sent: bool = False
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Translation:
    """The messages for the client (in order), or why none are sent."""

    messages: list[ToClient]
    dropped: str | None = None


class UpdateTranslator:
    """Turns Segue updates of OMOTES jobs into what the OMOTES client expects.

    - ``RUNNING`` is sent once, when the job first runs (a later step starting
      sends nothing); a progress update or a success also imply it, since
      Segue leaves out status notices that a result follows in the same batch.
    - Exactly one result per job; anything after it is dropped.
    - An update whose ``seq`` is not above the last one seen of its job is
      dropped (updates arrive out of order at times); one without ``seq`` (a
      refused submission) never is.

    The memory is bounded (``limit`` jobs, least recently updated forgotten
    first) and per process: after a restart a duplicate ``RUNNING`` or result
    may reach a client (OMOTES delivers at least once too).
    """

    def __init__(self, limit: int = DEFAULT_FOLLOW_LIMIT) -> None:
        self._jobs: OrderedDict[UUID, _Followed] = OrderedDict()
        self._limit = limit

    def translate(self, update: Update) -> Translation:
        """The messages ``update`` becomes; remembers that they are sent."""
        state = self._state(update.job_id)
        if state.finished:
            return Translation([], "the job's result was sent already")
        if update.seq is not None:
            if state.last_seq is not None and update.seq <= state.last_seq:
                return Translation([], f"stale (seq {update.seq} after {state.last_seq})")
            state.last_seq = update.seq
        match update:
            case JobStatusChanged():
                if update.status is not JobStatus.RUNNING:
                    return Translation([], f"status {update.status} is not told to OMOTES clients")
                if state.running_sent:
                    return Translation([], "RUNNING was sent already")
                return Translation(self._running(update.job_id, state))
            case JobProgressed():
                progress = JobProgressUpdate(
                    uuid=str(update.job_id), progress=update.fraction, message=update.message
                )
                messages = self._running(update.job_id, state)
                return Translation([*messages, to_client(update.job_id, "progress", progress)])
            case JobFinished():
                state.finished = True
                messages = []
                if update.status is JobStatus.SUCCEEDED:
                    messages = self._running(update.job_id, state)
                return Translation([*messages, *result_messages(update)])
        return Translation([], f"unexpected update {type(update).__name__}")

    def forget(self, job_id: UUID) -> None:
        """Forget ``job_id`` (its messages could not be sent: it is handled again)."""
        self._jobs.pop(job_id, None)

    def _running(self, job_id: UUID, state: _Followed) -> list[ToClient]:
        if state.running_sent:
            return []
        state.running_sent = True
        return [running(job_id)]

    def _state(self, job_id: UUID) -> _Followed:
        state = self._jobs.get(job_id)
        if state is None:
            state = self._jobs[job_id] = _Followed()
            while len(self._jobs) > self._limit:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(job_id)
        return state
