"""Engine effects become the right wire messages on the right exchanges."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from segue.engine.effects import (
    DispatchStep,
    Effect,
    NotifyProgress,
    NotifyResult,
    NotifyStatus,
    StopAttempt,
)
from segue.protocol.codec import TASK_ADAPTER, UPDATE_ADAPTER, decode
from segue.protocol.messages import ErrorInfo, JobFinished, JobStatus, JobStatusChanged
from segue.protocol.names import Names
from segue.service.outbox import is_durable, latest_notices, to_outbox

NAMES = Names("acme")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_dispatch_becomes_a_prioritised_task_routed_by_queue() -> None:
    attempt_id = uuid4()
    effect = DispatchStep(
        job_id=uuid4(),
        workflow="energy_plan",
        step="optimise",
        queue="optimise",
        attempt=2,
        attempt_id=attempt_id,
        priority=8,
        params={"a": 1},
        inputs={"prepare": {"rows": 3}},
        heartbeat_s=30.0,
        timeout_s=None,
    )
    row = to_outbox(effect, NAMES, NOW)
    assert (row.exchange, row.routing_key, row.priority) == ("acme.tasks", "optimise", 8)
    assert row.message_id == f"task-{attempt_id}"
    task = decode(TASK_ADAPTER, row.body)
    assert task.attempt_id == attempt_id
    assert task.attempt == 2
    assert task.inputs == {"prepare": {"rows": 3}}


def test_stop_goes_to_the_attempts_control_key() -> None:
    attempt_id = uuid4()
    row = to_outbox(StopAttempt(uuid4(), attempt_id, "cancelled"), NAMES, NOW)
    assert (row.exchange, row.routing_key) == ("acme.control", f"attempt.{attempt_id}")


def test_updates_go_to_the_jobs_topic_keys() -> None:
    job_id = uuid4()
    status = to_outbox(NotifyStatus(job_id, JobStatus.RUNNING, "prepare"), NAMES, NOW)
    progress = to_outbox(NotifyProgress(job_id, "prepare", 0.5, "half"), NAMES, NOW)
    error = ErrorInfo(kind="ValueError", message="x", step="prepare")
    result = to_outbox(NotifyResult(job_id, JobStatus.FAILED, error=error), NAMES, NOW)
    assert status.routing_key == f"job.{job_id}.status"
    assert progress.routing_key == f"job.{job_id}.progress"
    assert result.routing_key == f"job.{job_id}.result"
    assert {status.exchange, progress.exchange, result.exchange} == {"acme.updates"}
    assert isinstance(decode(UPDATE_ADAPTER, status.body), JobStatusChanged)
    finished = decode(UPDATE_ADAPTER, result.body)
    assert isinstance(finished, JobFinished)
    assert finished.error == error
    assert len({status.message_id, progress.message_id, result.message_id}) == 3


def test_only_tasks_stops_and_results_are_durable() -> None:
    job_id = uuid4()
    assert not is_durable(NotifyStatus(job_id, JobStatus.RUNNING, "a"))
    assert not is_durable(NotifyProgress(job_id, "a", 0.5, ""))
    assert is_durable(NotifyResult(job_id, JobStatus.SUCCEEDED))
    assert is_durable(StopAttempt(job_id, uuid4(), "cancelled"))


def test_latest_notices_keep_the_newest_status_and_progress_of_each_job() -> None:
    job_a, job_b = uuid4(), uuid4()
    effects: list[Effect] = [
        NotifyStatus(job_a, JobStatus.QUEUED, "prepare"),
        NotifyProgress(job_a, "prepare", 0.1, "starting"),
        NotifyStatus(job_b, JobStatus.RUNNING, "prepare"),
        NotifyStatus(job_a, JobStatus.RUNNING, "prepare"),
        NotifyProgress(job_a, "prepare", 0.9, "almost"),
        StopAttempt(job_b, uuid4(), "timeout"),
    ]

    assert latest_notices(effects) == [
        NotifyStatus(job_b, JobStatus.RUNNING, "prepare"),
        NotifyStatus(job_a, JobStatus.RUNNING, "prepare"),
        NotifyProgress(job_a, "prepare", 0.9, "almost"),
    ]


def test_latest_notices_send_none_for_a_job_whose_result_is_in_the_batch() -> None:
    finished, running = uuid4(), uuid4()
    effects: list[Effect] = [
        NotifyStatus(finished, JobStatus.RUNNING, "a"),
        NotifyProgress(finished, "a", 0.5, ""),
        NotifyStatus(running, JobStatus.RUNNING, "a"),
        NotifyResult(finished, JobStatus.SUCCEEDED, output={}),
        NotifyProgress(finished, "a", 1.0, "late"),
    ]

    assert latest_notices(effects) == [NotifyStatus(running, JobStatus.RUNNING, "a")]


def test_updates_of_a_job_with_an_updates_key_are_also_routed_to_it() -> None:
    job_id = uuid4()
    status = to_outbox(NotifyStatus(job_id, JobStatus.RUNNING, "a"), NAMES, NOW, "client.c1")
    result = to_outbox(NotifyResult(job_id, JobStatus.SUCCEEDED), NAMES, NOW, "client.c1")
    plain = to_outbox(NotifyResult(job_id, JobStatus.SUCCEEDED), NAMES, NOW)
    assert status.headers == {"CC": ["client.c1"]}
    assert result.headers == {"CC": ["client.c1"]}
    assert result.routing_key == f"job.{job_id}.result"
    assert plain.headers == {}


def test_only_notices_are_transient() -> None:
    job_id, attempt_id = uuid4(), uuid4()
    assert not to_outbox(NotifyStatus(job_id, JobStatus.RUNNING, "a"), NAMES, NOW).persistent
    assert not to_outbox(NotifyProgress(job_id, "a", 0.5, "half"), NAMES, NOW).persistent
    assert to_outbox(NotifyResult(job_id, JobStatus.SUCCEEDED), NAMES, NOW).persistent
    assert to_outbox(StopAttempt(job_id, attempt_id, "stop"), NAMES, NOW).persistent
