"""OMOTES wire messages <-> Segue messages (segue.omotes.translate): pure, no broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from google.protobuf.struct_pb2 import Struct

from segue.omotes.names import job_queue
from segue.omotes.translate import (
    DELETE_REASON,
    OUTPUT_MISSING_KIND,
    OUTPUT_UNREADABLE_KIND,
    TASK_ERROR_KIND,
    OutputEsdlRef,
    Refusal,
    Submission,
    ToClient,
    UpdateTranslator,
    esdl_messages,
    output_unreadable,
    read_delete,
    read_submission,
    with_output_esdl,
)
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
)
from segue.workflows.loader import Catalog, parse_workflows
from segue.workflows.parameters import ParameterError, resolve_params

UPDATES_KEY = "client.guest.omotes"
AT = datetime(2030, 1, 1, tzinfo=UTC)
LEGACY = [
    {
        "workflow_type_name": "simulator",
        "workflow_type_description_name": "Simulator",
        "workflow_parameters": [
            {"parameter_type": "integer", "key_name": "steps", "default": 2, "maximum": 10},
            {"parameter_type": "float", "key_name": "ratio", "default": 0.5},
            {"parameter_type": "boolean", "key_name": "fast", "default": True},
            {"parameter_type": "string", "key_name": "name", "default": "x"},
            {"parameter_type": "datetime", "key_name": "start", "default": "2030-01-01T00:00:00"},
            {
                "parameter_type": "datetime",
                "key_name": "end",
                "default": "2030-12-31T23:00:00",
                "constraints": [{"other_key_name": "start", "relation": "greater"}],
            },
            {"parameter_type": "duration", "key_name": "step", "default": 3600, "minimum": 60},
        ],
    }
]
CATALOG = parse_workflows(LEGACY)


def sdk_params(**values: Any) -> Struct:
    """Params as the OMOTES SDK puts them on the wire (convert_params_dict_to_struct):
    ints as floats, datetimes as ``.timestamp()``, timedeltas as float seconds."""
    wire: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, datetime):
            wire[key] = value.timestamp()
        elif isinstance(value, timedelta):
            wire[key] = value.total_seconds()
        elif isinstance(value, int) and not isinstance(value, bool):
            wire[key] = float(value)
        else:
            wire[key] = value
    struct = Struct()
    struct.update(wire)
    return struct


SDK_VALUES: dict[str, Any] = {
    "steps": 7,
    "ratio": 0.25,
    "fast": False,
    "name": "run",
    "start": datetime(2030, 6, 1, tzinfo=UTC),
    "end": datetime(2030, 6, 2, 12, 30, 0, 500000, tzinfo=UTC),
    "step": timedelta(minutes=15),
}


def submit(**fields: Any) -> bytes:
    defaults: dict[str, Any] = {
        "uuid": str(UUID(int=1)),
        "workflow_type": "simulator",
        "esdl": "<esdl/>",
        "params_dict": sdk_params(**SDK_VALUES),
        "job_priority": JobPriority.MEDIUM,
    }
    return JobSubmission(**{**defaults, **fields}).SerializeToString()


def read(body: bytes, catalog: Catalog = CATALOG) -> Submission:
    read = read_submission(body, catalog, UPDATES_KEY)
    assert isinstance(read, Submission), read
    return read


# --- submissions ------------------------------------------------------------------------


def test_a_submission_becomes_a_segue_job_with_the_omotes_uuid() -> None:
    submission = read(submit(job_reference="ref", timeout_ms=2500))

    command = submission.command
    assert command.job_id == UUID(int=1)
    assert command.workflow == "simulator"
    assert command.reference == "ref"
    assert command.timeout_s == 2.5
    assert command.updates_key == UPDATES_KEY
    assert (submission.esdl, submission.job_reference) == ("<esdl/>", "ref")


def test_the_sdks_wire_values_are_read_as_segue_values() -> None:
    params = read(submit()).command.params

    assert params == {
        "steps": 7,
        "ratio": 0.25,
        "fast": False,
        "name": "run",
        "start": "2030-06-01T00:00:00+00:00",
        "end": "2030-06-02T12:30:00.500000+00:00",
        "step": 900.0,
    }
    assert isinstance(params["steps"], int)


def test_the_sdks_wire_values_pass_segues_parameter_checks() -> None:
    loaded = CATALOG.get("simulator")
    assert loaded is not None

    resolved = resolve_params(loaded.workflow, read(submit()).command.params)

    assert resolved["steps"] == 7
    assert resolved["step"] == 900.0


def test_a_naive_datetime_means_the_clients_local_moment_and_arrives_as_that_moment() -> None:
    local = datetime(2030, 6, 1, 8, 0)  # the SDK calls .timestamp(): the machine's local time
    params = read(submit(params_dict=sdk_params(**{**SDK_VALUES, "start": local}))).command.params

    assert datetime.fromisoformat(params["start"]) == local.astimezone(UTC)


def test_wire_values_breaking_the_rules_are_left_for_the_server_to_refuse() -> None:
    values = {**SDK_VALUES, "steps": 50, "end": datetime(2020, 1, 1, tzinfo=UTC)}
    command = read(submit(params_dict=sdk_params(**values))).command
    loaded = CATALOG.get("simulator")
    assert loaded is not None

    with pytest.raises(ParameterError) as refused:
        resolve_params(loaded.workflow, command.params)

    assert any(problem.startswith("params.steps:") for problem in refused.value.problems)
    assert any(problem.startswith("params.end:") for problem in refused.value.problems)


def test_an_unknown_workflows_values_pass_as_they_are() -> None:
    command = read(submit(workflow_type="other")).command

    assert command.workflow == "other"
    assert command.params["steps"] == 7.0
    assert isinstance(command.params["start"], float)


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(JobPriority.LOW, 2), (JobPriority.MEDIUM, 4), (JobPriority.HIGH, 6), (None, 4), (9, 4)],
)
def test_priorities_map_as_omotes_maps_them_to_celery(priority: int | None, expected: int) -> None:
    message = JobSubmission(uuid=str(uuid4()), workflow_type="simulator")
    if priority is not None:
        message.job_priority = priority  # type: ignore[assignment]

    assert read(message.SerializeToString()).command.priority == expected


@pytest.mark.parametrize(("timeout_ms", "expected"), [(None, None), (0, None), (1, 0.001)])
def test_timeouts_are_seconds_and_zero_means_none(
    timeout_ms: int | None, expected: float | None
) -> None:
    message = JobSubmission(uuid=str(uuid4()), workflow_type="simulator")
    if timeout_ms is not None:
        message.timeout_ms = timeout_ms

    assert read(message.SerializeToString()).command.timeout_s == expected


def test_references_unset_empty_and_long_are_kept_whole_apart() -> None:
    unset = read(submit())
    empty = read(submit(job_reference=""))
    long = read(submit(job_reference="r" * 2000))

    assert (unset.command.reference, unset.job_reference) == (None, None)
    assert (empty.command.reference, empty.job_reference) == ("", "")
    assert long.job_reference == "r" * 2000
    assert long.command.reference is not None
    assert len(long.command.reference) == 500


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xff not protobuf", "invalid protobuf"),
        (JobSubmission(uuid="nope", workflow_type="x").SerializeToString(), "valid uuid"),
        (JobDelete(uuid=str(UUID(int=3))).SerializeToString(), "names no workflow_type"),
    ],
)
def test_what_is_no_submission_is_refused_without_answer(body: bytes, reason: str) -> None:
    refusal = read_submission(body, CATALOG, UPDATES_KEY)

    assert isinstance(refusal, Refusal)
    assert reason in refusal.reason
    assert refusal.answer is None


def test_a_submission_segue_cannot_take_is_answered_with_an_error_result() -> None:
    job_id = uuid4()
    refusal = read_submission(
        submit(uuid=str(job_id), workflow_type="w" * 300), CATALOG, UPDATES_KEY
    )

    assert isinstance(refusal, Refusal)
    assert refusal.answer is not None
    assert refusal.answer.routing_key == f"jobs.{job_id}.result"
    result = JobResult.FromString(refusal.answer.body())
    assert result.result_type == JobResult.ERROR
    assert "workflow" in result.logs
    assert result.logs == refusal.reason


def test_params_that_are_no_json_are_answered_with_an_error_result() -> None:
    params = Struct()
    params.update({"ratio": float("nan")})

    refusal = read_submission(submit(params_dict=params), CATALOG, UPDATES_KEY)

    assert isinstance(refusal, Refusal)
    assert refusal.answer is not None
    assert "params_dict" in refusal.reason


def test_a_delete_becomes_a_cancel() -> None:
    job_id = uuid4()

    assert read_delete(JobDelete(uuid=str(job_id)).SerializeToString()) == CancelJob(
        job_id=job_id, reason=DELETE_REASON
    )
    assert isinstance(read_delete(JobDelete(uuid="x").SerializeToString()), Refusal)
    assert isinstance(read_delete(b"\xff\xff"), Refusal)


# --- updates ----------------------------------------------------------------------------

JOB = UUID(int=7)


def status(value: JobStatus, seq: int | None, step: str | None = "s") -> JobStatusChanged:
    return JobStatusChanged(job_id=JOB, status=value, step=step, at=AT, seq=seq)


def progress(fraction: float, seq: int | None, message: str = "busy") -> JobProgressed:
    return JobProgressed(job_id=JOB, step="s", fraction=fraction, message=message, at=AT, seq=seq)


def finished(
    value: JobStatus,
    seq: int | None,
    output: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
) -> JobFinished:
    return JobFinished(job_id=JOB, status=value, output=output, error=error, at=AT, seq=seq)


def shown(messages: list[ToClient]) -> list[tuple[str, str]]:
    """(queue kind, what) per message: ``("status", "RUNNING")``, ``("result", "ERROR")``."""
    described = []
    for message in messages:
        kind = message.routing_key.rsplit(".", 1)[1]
        assert message.routing_key == job_queue(JOB, kind)  # type: ignore[arg-type]
        match message.message:
            case JobStatusUpdate() as update:
                described.append((kind, JobStatusUpdate.JobStatus.Name(update.status)))
            case JobProgressUpdate() as update:
                described.append((kind, f"{update.progress} {update.message}"))
            case JobResult() as result:
                described.append((kind, JobResult.ResultType.Name(result.result_type)))
    return described


def test_running_is_told_once_then_progress_then_one_result() -> None:
    translator = UpdateTranslator()
    output = {"output_esdl": "<out/>", "esdl_messages": [], "logs": "fine"}

    told = [
        shown(translator.translate(update).messages)
        for update in (
            status(JobStatus.QUEUED, 1, None),
            status(JobStatus.RUNNING, 2),
            progress(0.5, 3),
            status(JobStatus.RUNNING, 4, "next step"),
            finished(JobStatus.SUCCEEDED, 5, output),
            progress(0.9, 6),
            finished(JobStatus.SUCCEEDED, 7, output),
        )
    ]

    assert told == [
        [],
        [("status", "RUNNING")],
        [("progress", "0.5 busy")],
        [],
        [("result", "SUCCEEDED")],
        [],
        [],
    ]


def test_stale_updates_are_dropped_by_seq() -> None:
    translator = UpdateTranslator()
    translator.translate(progress(0.5, 5))

    stale = translator.translate(progress(0.2, 4))
    again = translator.translate(progress(0.5, 5))

    assert stale.messages == []
    assert stale.dropped is not None
    assert "stale" in stale.dropped
    assert again.messages == []


@pytest.mark.parametrize(
    "first", [progress(0.3, 2), finished(JobStatus.SUCCEEDED, 2, {"output_esdl": "<o/>"})]
)
def test_running_comes_first_when_segue_left_it_out(first: JobProgressed | JobFinished) -> None:
    assert shown(UpdateTranslator().translate(first).messages)[0] == ("status", "RUNNING")


def test_a_success_carries_the_output_esdl_messages_and_logs() -> None:
    output = {
        "output_esdl": "<out/>",
        "esdl_messages": [
            {"technical_message": "ok", "severity": "INFO", "esdl_object_id": "a1"},
            {"technical_message": "hm", "severity": "WARNING", "esdl_object_id": None},
        ],
        "logs": "stdout",
    }

    messages = UpdateTranslator().translate(finished(JobStatus.SUCCEEDED, 3, output)).messages
    result = JobResult.FromString(messages[-1].body())

    assert result.result_type == JobResult.SUCCEEDED
    assert result.output_esdl == "<out/>"
    assert result.logs == "stdout"
    assert [(m.technical_message, m.severity) for m in result.esdl_messages] == [
        ("ok", EsdlMessage.INFO),
        ("hm", EsdlMessage.WARNING),
    ]
    assert result.esdl_messages[0].esdl_object_id == "a1"
    assert not result.esdl_messages[1].HasField("esdl_object_id")


def test_a_success_without_output_esdl_has_none() -> None:
    messages = UpdateTranslator().translate(finished(JobStatus.SUCCEEDED, 3, {})).messages
    result = JobResult.FromString(messages[-1].body())

    assert result.result_type == JobResult.SUCCEEDED
    assert not result.HasField("output_esdl")


# --- output ESDLs stored apart (omotes_outputs) ------------------------------------------

ATTEMPT = UUID(int=9)
LARGE_ESDL = "<esdl:EnergySystem name='Zürich ∆'>" + "<asset id='a'/>" * 250_000 + "</esdl>"
"""About 4 MB, with characters of two and three UTF-8 bytes."""


def stored_output(esdl: str) -> dict[str, Any]:
    """A step output of the Celery bridge's convention whose ESDL is stored apart."""
    return {
        "output_esdl_ref": str(ATTEMPT),
        "output_esdl_bytes": len(esdl.encode()),
        "esdl_messages": [{"technical_message": "ok", "severity": "INFO", "esdl_object_id": "a1"}],
        "logs": "the worker's logs",
    }


def waiting_result(output: dict[str, Any]) -> ToClient:
    """The result a success with ``output`` becomes, before its ESDL is read."""
    return UpdateTranslator().translate(finished(JobStatus.SUCCEEDED, 3, output)).messages[-1]


def test_a_success_refers_to_its_stored_esdl_and_waits_for_it() -> None:
    message = waiting_result(stored_output(LARGE_ESDL))

    assert message.esdl_ref == OutputEsdlRef(ATTEMPT, len(LARGE_ESDL.encode()))
    assert message.routing_key == job_queue(JOB, "result")
    assert isinstance(message.message, JobResult)
    assert not message.message.HasField("output_esdl")
    assert len(message.body()) < 1000  # the reference travels, not the ESDL


def test_the_stored_esdl_reaches_the_client_byte_identical() -> None:
    message = waiting_result(stored_output(LARGE_ESDL))

    complete = with_output_esdl(message, LARGE_ESDL.encode())

    assert complete.esdl_ref is None
    result = JobResult.FromString(complete.body())
    assert result.result_type == JobResult.SUCCEEDED
    assert result.output_esdl.encode() == LARGE_ESDL.encode()
    assert result.logs == "the worker's logs"
    assert [(m.technical_message, m.esdl_object_id) for m in result.esdl_messages] == [("ok", "a1")]


def test_a_stored_esdl_that_is_gone_makes_a_clear_error_result() -> None:
    complete = with_output_esdl(waiting_result(stored_output("<esdl/>")), None)

    result = JobResult.FromString(complete.body())
    assert complete.routing_key == job_queue(JOB, "result")
    assert result.result_type == JobResult.ERROR
    assert not result.HasField("output_esdl")
    first, logs = result.logs.split("\n")
    assert first.startswith(f"{OUTPUT_MISSING_KIND}: the output ESDL of job {JOB}")
    assert str(ATTEMPT) in first
    assert "no longer stored" in first
    assert logs == "the worker's logs"
    assert [m.technical_message for m in result.esdl_messages] == ["ok"]


@pytest.mark.parametrize(
    ("stored", "says"), [(b"<esdl/", "stored with 6 bytes"), (b"<esd\xff/>", "no UTF-8")]
)
def test_a_stored_esdl_that_is_not_what_was_referred_to_makes_an_error_result(
    stored: bytes, says: str
) -> None:
    complete = with_output_esdl(waiting_result(stored_output("<esdl/>")), stored)

    result = JobResult.FromString(complete.body())
    assert result.result_type == JobResult.ERROR
    assert result.logs.startswith(f"{OUTPUT_UNREADABLE_KIND}: ")
    assert says in result.logs


@pytest.mark.parametrize(
    "ref",
    [
        {"output_esdl_ref": "not-a-uuid", "output_esdl_bytes": 5},
        {"output_esdl_ref": str(ATTEMPT), "output_esdl_bytes": "5"},
        {"output_esdl_ref": str(ATTEMPT)},
    ],
)
def test_an_invalid_reference_is_an_error_result_at_once(ref: dict[str, Any]) -> None:
    message = waiting_result({**ref, "logs": "l"})

    assert message.esdl_ref is None
    result = JobResult.FromString(message.body())
    assert result.result_type == JobResult.ERROR
    assert result.logs.startswith(f"{OUTPUT_UNREADABLE_KIND}: the step output's reference")
    assert result.logs.endswith("\nl")


def test_an_esdl_that_cannot_be_read_makes_an_error_result_saying_why() -> None:
    complete = output_unreadable(waiting_result(stored_output("<esdl/>")), "permission denied")

    result = JobResult.FromString(complete.body())
    assert result.result_type == JobResult.ERROR
    assert "could not be read from omotes_outputs: permission denied" in result.logs


def test_an_inline_output_esdl_needs_no_reading() -> None:
    message = waiting_result({"output_esdl": "<inline/>", "logs": ""})

    assert message.esdl_ref is None
    assert with_output_esdl(message, None) is message
    assert JobResult.FromString(message.body()).output_esdl == "<inline/>"


def test_a_failed_omotes_task_reports_its_logs_and_esdl_messages() -> None:
    details = {"esdl_messages": [{"technical_message": "bad", "severity": "ERROR"}]}
    error = ErrorInfo(
        kind=TASK_ERROR_KIND, message="the logs", step="s", details=json.dumps(details)
    )

    messages = UpdateTranslator().translate(finished(JobStatus.FAILED, 4, error=error)).messages

    assert shown(messages) == [("result", "ERROR")]
    result = JobResult.FromString(messages[0].body())
    assert result.logs == "the logs"
    assert [(m.technical_message, m.severity) for m in result.esdl_messages] == [
        ("bad", EsdlMessage.ERROR)
    ]


def test_a_refused_submission_is_an_error_with_the_reasons() -> None:
    error = ErrorInfo(kind="invalid_parameters", message="params.steps: 50 is above 10")

    messages = UpdateTranslator().translate(finished(JobStatus.FAILED, None, error=error)).messages

    assert shown(messages) == [("result", "ERROR")]
    assert JobResult.FromString(messages[0].body()).logs == (
        "invalid_parameters: params.steps: 50 is above 10"
    )


def test_another_failure_keeps_its_kind_and_details_in_the_logs() -> None:
    error = ErrorInfo(kind="ValueError", message="boom", step="s", details="Traceback ...")

    messages = UpdateTranslator().translate(finished(JobStatus.FAILED, 4, error=error)).messages

    assert JobResult.FromString(messages[0].body()).logs == "ValueError: boom\nTraceback ..."


def test_a_cancelled_job_sends_the_cancelled_status_before_its_result() -> None:
    error = ErrorInfo(kind="cancelled", message=DELETE_REASON)

    messages = UpdateTranslator().translate(finished(JobStatus.CANCELLED, 4, error=error)).messages

    assert shown(messages) == [("status", "CANCELLED"), ("result", "CANCELLED")]
    assert JobResult.FromString(messages[1].body()).logs == DELETE_REASON


def test_a_timed_out_job_ends_in_timeout() -> None:
    error = ErrorInfo(kind="job_timeout", message="job did not finish within 5s")

    messages = UpdateTranslator().translate(finished(JobStatus.TIMED_OUT, 4, error=error)).messages

    assert shown(messages) == [("result", "TIMEOUT")]
    assert JobResult.FromString(messages[0].body()).logs == "job did not finish within 5s"


def test_a_forgotten_job_is_translated_afresh() -> None:
    translator = UpdateTranslator()
    translator.translate(finished(JobStatus.SUCCEEDED, 3, {}))

    translator.forget(JOB)

    assert shown(translator.translate(finished(JobStatus.SUCCEEDED, 3, {})).messages)[-1] == (
        "result",
        "SUCCEEDED",
    )


def test_the_memory_is_bounded() -> None:
    translator = UpdateTranslator(limit=2)
    translator.translate(finished(JobStatus.SUCCEEDED, 3, {}))
    for _ in range(2):
        other = JobStatusChanged(job_id=uuid4(), status=JobStatus.RUNNING, at=AT, seq=1)
        translator.translate(other)

    assert translator.translate(finished(JobStatus.SUCCEEDED, 3, {})).messages != []


def test_esdl_messages_are_read_leniently() -> None:
    raw = [
        {"technical_message": "a", "severity": "debug"},
        {"technical_message": "b", "severity": 2},
        {"technical_message": "c", "severity": "LOUD"},
        {"severity": "ERROR", "esdl_object_id": 5},
        "not a message",
    ]

    messages = esdl_messages(raw)

    assert [(m.technical_message, m.severity) for m in messages] == [
        ("a", EsdlMessage.DEBUG),
        ("b", EsdlMessage.WARNING),
        ("c", EsdlMessage.INFO),
        ("", EsdlMessage.ERROR),
    ]
    assert not any(m.HasField("esdl_object_id") for m in messages)
    assert esdl_messages("nope") == []
