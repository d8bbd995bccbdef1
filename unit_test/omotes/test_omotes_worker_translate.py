"""Segue step tasks <-> OMOTES Celery workers: the Celery task a step becomes, and the
Segue events a worker's progress and results become (no broker, no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from segue.errors import ConfigurationError
from segue.omotes.bridge import omotes_task_types
from segue.omotes.celery_handlers import beat_interval
from segue.omotes.store import OmotesInput, OmotesOutput
from segue.omotes.translate import UpdateTranslator, with_output_esdl
from segue.omotes.wire.omotes_wire_pb2 import (
    EsdlMessage,
    JobResult,
    TaskProgressUpdate,
    TaskResult,
)
from segue.omotes.worker_translate import (
    OUTPUT_TOO_LARGE_KIND,
    TaskRecord,
    celery_task,
    error_details,
    finished,
    progressed,
    started,
    stop_is_forged,
    worker_id,
    worker_params,
)
from segue.protocol.codec import encode
from segue.protocol.messages import (
    MAX_ERROR_DETAILS_CHARS,
    CancelAttempt,
    JobFinished,
    JobStatus,
    StepFailed,
    StepSucceeded,
    StepTask,
)
from segue.protocol.tokens import token_digest
from segue.workflows.loader import parse_workflows

NOW = datetime(2030, 1, 1, tzinfo=UTC)
JOB_ID = UUID("5f0c9a2e-0d6e-4e25-8c89-2f4c3d0c2b11")
ATTEMPT_ID = UUID("0b0e7f3c-5a55-4c1e-9a1f-1a4ddc0d2a71")
LEGACY = [
    {
        "workflow_type_name": "simulator",
        "workflow_type_description_name": "Simulation",
        "workflow_parameters": [
            {"parameter_type": "float", "key_name": "factor"},
            {"parameter_type": "integer", "key_name": "steps"},
            {"parameter_type": "datetime", "key_name": "start"},
            {"parameter_type": "duration", "key_name": "horizon"},
            {"parameter_type": "string", "key_name": "mode"},
            {"parameter_type": "boolean", "key_name": "fast"},
        ],
    },
    {"workflow_type_name": "optimizer", "workflow_type_description_name": "Optimisation"},
]


def record(starts: int = 1, token: str | None = "secret-token") -> TaskRecord:
    return TaskRecord(ATTEMPT_ID, JOB_ID, "simulator", token, 60.0, starts)


def step_task(**params: Any) -> StepTask:
    return StepTask(
        job_id=JOB_ID,
        workflow="simulator",
        step="simulator",
        queue="simulator",
        attempt=1,
        attempt_id=ATTEMPT_ID,
        params=params,
        token="secret-token",
    )


# --- Segue task -> Celery task ----------------------------------------------------------


def test_parameters_reach_the_worker_in_their_omotes_wire_form() -> None:
    workflow = parse_workflows(LEGACY).get("simulator")
    assert workflow is not None

    params = worker_params(
        workflow.workflow,
        {
            "factor": 2,
            "steps": 3,
            "start": "2030-01-01T01:00:00+01:00",
            "horizon": "PT1H30M",
            "mode": "quick",
            "fast": True,
            "undeclared": 7,
        },
    )

    assert params == {
        "factor": 2.0,
        "steps": 3.0,
        "start": 1893456000.0,
        "horizon": 5400.0,
        "mode": "quick",
        "fast": True,
        "undeclared": 7,
    }
    assert all(isinstance(params[key], float) for key in ("factor", "steps", "start", "horizon"))


def test_a_duration_in_seconds_and_values_that_do_not_read_pass_as_they_are() -> None:
    workflow = parse_workflows(LEGACY).get("simulator")
    assert workflow is not None

    params = worker_params(workflow.workflow, {"horizon": 90, "start": "tomorrow"})

    assert params == {"horizon": 90.0, "start": "tomorrow"}


def test_a_step_becomes_the_celery_task_of_its_queue_with_the_attempt_as_task_id() -> None:
    task = step_task(mode="quick")
    inputs = OmotesInput(JOB_ID, "<esdl/>", "my reference")

    message = celery_task(task, inputs, None, priority=6, origin="segue@host")

    assert message.headers["task"] == "simulator"
    assert message.headers["id"] == str(ATTEMPT_ID)
    assert message.priority == 6
    args, kwargs, _ = json.loads(message.body)
    assert args == [str(JOB_ID), "my reference", "<esdl/>", {"mode": "quick"}]
    assert kwargs == {}


def test_a_job_without_omotes_inputs_sends_an_empty_esdl_and_no_reference() -> None:
    message = celery_task(step_task(), None, None, priority=5, origin="o")

    args = json.loads(message.body)[0]
    assert args[1:3] == [None, ""]


# --- Celery worker events -> Segue events -------------------------------------------------


def test_each_start_of_a_task_is_a_run_of_its_own_and_a_restart_is_a_redelivery() -> None:
    first, second = started(record(starts=1), NOW), started(record(starts=2), NOW)

    assert (first.worker_id, first.redelivered) == (f"celery:{ATTEMPT_ID}:1", False)
    assert (second.worker_id, second.redelivered) == (f"celery:{ATTEMPT_ID}:2", True)
    assert (first.job_id, first.attempt_id, first.token) == (JOB_ID, ATTEMPT_ID, "secret-token")
    assert first.sent_at == NOW
    assert worker_id(ATTEMPT_ID, 0) == f"celery:{ATTEMPT_ID}:1"  # progress before any START


@pytest.mark.parametrize(("sent", "fraction"), [(0.5, 0.5), (-1.0, 0.0), (7.0, 1.0)])
def test_progress_is_reported_within_0_and_1(sent: float, fraction: float) -> None:
    update = TaskProgressUpdate(
        job_id=str(JOB_ID), celery_task_id=str(ATTEMPT_ID), progress=sent, message="half"
    )

    event = progressed(update, record(), NOW)

    assert (event.fraction, event.message, event.token) == (fraction, "half", "secret-token")


def esdl_messages() -> list[EsdlMessage]:
    return [
        EsdlMessage(technical_message="too small", severity=EsdlMessage.ERROR, esdl_object_id="a1"),
        EsdlMessage(technical_message="general", severity=EsdlMessage.WARNING),
    ]


EXPECTED_MESSAGES = [
    {"technical_message": "too small", "severity": "ERROR", "esdl_object_id": "a1"},
    {"technical_message": "general", "severity": "WARNING", "esdl_object_id": None},
]


def test_a_succeeded_task_stores_its_output_esdl_and_refers_to_it() -> None:
    esdl = "<esdl name='Zürich'>" + "<asset/>" * 500_000 + "</esdl>"  # 4 MB
    result = TaskResult(
        job_id=str(JOB_ID),
        celery_task_id=str(ATTEMPT_ID),
        result_type=TaskResult.SUCCEEDED,
        output_esdl=esdl,
        logs="all went well",
        esdl_messages=esdl_messages(),
    )

    end = finished(result, record(), NOW, max_bytes=1_000_000)

    assert end.output == OmotesOutput(JOB_ID, ATTEMPT_ID, esdl.encode())
    assert isinstance(end.event, StepSucceeded)
    assert end.event.output == {
        "output_esdl_ref": str(ATTEMPT_ID),
        "output_esdl_bytes": len(esdl.encode()),
        "esdl_messages": EXPECTED_MESSAGES,
        "logs": "all went well",
    }
    assert len(encode(end.event)) < 2000  # the event carries the reference only
    assert end.event.token == "secret-token"


def test_the_gateway_turns_the_reference_back_into_the_output_esdl() -> None:
    esdl = "<esdl name='∆'>" + "<asset/>" * 1000 + "</esdl>"
    result = TaskResult(result_type=TaskResult.SUCCEEDED, output_esdl=esdl, logs="fine")
    end = finished(result, record(), NOW, max_bytes=1_000_000)
    assert isinstance(end.event, StepSucceeded)
    assert end.output is not None
    update = JobFinished(
        job_id=JOB_ID, status=JobStatus.SUCCEEDED, output=end.event.output, at=NOW, seq=3
    )

    _running, waiting = UpdateTranslator().translate(update).messages
    sent = JobResult.FromString(with_output_esdl(waiting, end.output.esdl).body())

    assert (sent.result_type, sent.output_esdl, sent.logs) == (JobResult.SUCCEEDED, esdl, "fine")


def test_a_succeeded_task_without_output_esdl_stores_nothing() -> None:
    result = TaskResult(result_type=TaskResult.SUCCEEDED, logs="no ESDL")

    end = finished(result, record(), NOW, max_bytes=1_000_000)

    assert end.output is None
    assert isinstance(end.event, StepSucceeded)
    assert end.event.output == {"output_esdl": None, "esdl_messages": [], "logs": "no ESDL"}


def test_a_failed_task_fails_the_step_for_good_with_its_logs_and_messages() -> None:
    result = TaskResult(
        job_id=str(JOB_ID),
        celery_task_id=str(ATTEMPT_ID),
        result_type=TaskResult.ERROR,
        output_esdl="",
        logs="Traceback: infeasible",
        esdl_messages=esdl_messages(),
    )

    end = finished(result, record(), NOW, max_bytes=1_000_000)

    assert end.output is None
    event = end.event
    assert isinstance(event, StepFailed)
    assert not event.retryable
    assert (event.error.kind, event.error.message) == ("omotes_task_error", "Traceback: infeasible")
    assert json.loads(event.error.details or "") == {"esdl_messages": EXPECTED_MESSAGES}


def test_a_result_too_large_for_a_segue_event_fails_the_step_saying_what_to_raise() -> None:
    result = TaskResult(result_type=TaskResult.SUCCEEDED, output_esdl="<e/>", logs="x" * 5000)

    end = finished(result, record(), NOW, max_bytes=4000)

    assert end.output is None  # nothing stored for a step that fails
    assert isinstance(end.event, StepFailed)
    assert end.event.error.kind == OUTPUT_TOO_LARGE_KIND
    assert "SEGUE_MAX_MESSAGE_BYTES" in end.event.error.message
    assert not end.event.retryable


def test_error_details_stay_json_when_there_are_too_many_messages() -> None:
    messages = [{"technical_message": "m" * 500, "severity": "ERROR", "esdl_object_id": None}] * 200

    details = json.loads(error_details(messages))

    assert len(error_details(messages)) <= MAX_ERROR_DETAILS_CHARS
    kept = len(details["esdl_messages"])
    assert 0 < kept < 200
    assert details["esdl_messages_left_out"] == 200 - kept


# --- stops --------------------------------------------------------------------------------


def cancel(digest: str | None, worker: str | None = None) -> CancelAttempt:
    return CancelAttempt(
        job_id=JOB_ID, attempt_id=ATTEMPT_ID, reason="r", worker_id=worker, token_digest=digest
    )


def test_a_stop_must_carry_the_digest_of_the_attempts_token() -> None:
    assert not stop_is_forged(record(), cancel(token_digest("secret-token")))
    assert stop_is_forged(record(), cancel(token_digest("guessed")))
    assert stop_is_forged(record(), cancel(None))
    assert not stop_is_forged(record(token=None), cancel(None))  # no token: any stop counts


# --- which queues, how often ----------------------------------------------------------------


def test_the_task_types_are_the_setting_or_else_every_queue_of_a_legacy_file() -> None:
    legacy = parse_workflows(LEGACY)
    format_1 = parse_workflows(
        {"format_version": 1, "workflows": [{"name": "w", "steps": [{"name": "s", "queue": "q"}]}]}
    )

    assert legacy.legacy
    assert not format_1.legacy
    assert omotes_task_types("", legacy) == {"simulator", "optimizer"}
    assert omotes_task_types(" optimizer , ", legacy) == {"optimizer"}
    assert omotes_task_types("", format_1) == frozenset()
    assert omotes_task_types("q", format_1) == {"q"}


def test_a_task_type_that_cannot_be_a_queue_stops_the_service_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="SEGUE_OMOTES_TASK_TYPES"):
        omotes_task_types("good, not good", parse_workflows(LEGACY))


@pytest.mark.parametrize(("heartbeat_s", "interval"), [(60.0, 20.0), (2.0, 1.0), (None, None)])
def test_liveness_is_checked_three_times_per_heartbeat_limit(
    heartbeat_s: float | None, interval: float | None
) -> None:
    assert beat_interval(heartbeat_s) == interval


def test_the_record_names_its_current_run() -> None:
    assert record(starts=3).worker_id == f"celery:{ATTEMPT_ID}:3"
    assert TaskRecord(uuid4(), JOB_ID, "t", None, None).starts == 0
