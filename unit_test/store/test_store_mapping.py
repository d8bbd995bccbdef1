"""Engine state <-> table rows, without a database."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest

from segue.engine.effects import Record
from segue.engine.state import Attempt, Job, new_attempt_id
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.store.mapping import (
    attempt_rows,
    attempt_to_row,
    job_to_row,
    record_rows,
    row_to_attempt,
    row_to_attempt_view,
    row_to_job,
    row_to_job_view,
    row_to_workflow,
    workflow_to_row,
)
from segue.store.tables import jobs, step_attempts
from segue.workflows.model import Workflow

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))
WORKFLOW = Workflow.model_validate(
    {
        "name": "w",
        "version": "3",
        "steps": [{"name": "a", "queue": "a", "next": "b"}, {"name": "b", "queue": "b"}],
    }
)


def full_attempt(ordinal: int = 1) -> Attempt:
    """An attempt with every field set to a non-default value."""
    return Attempt(
        attempt_id=new_attempt_id(uuid4(), ordinal),
        step="a",
        number=2,
        status=AttemptStatus.FAILED,
        created_at=NOW,
        due_at=NOW + timedelta(seconds=1),
        dispatched_at=NOW + timedelta(seconds=2),
        started_at=(NOW + timedelta(seconds=3)).astimezone(CET),
        finished_at=NOW + timedelta(seconds=4),
        last_seen_at=NOW + timedelta(seconds=5),
        worker_id="worker-1",
        progress=0.5,
        progress_message="half way",
        output={"rows": [1, 2], "nested": {"ok": True}},
        error=ErrorInfo(kind="ValueError", message="bad", step="a", details="trace"),
        item_index=4,
        iteration=3,
    )


def full_job() -> Job:
    """A job with every field set to a non-default value."""
    return Job(
        job_id=uuid4(),
        workflow=WORKFLOW,
        workflow_hash="sha256:abc",
        params={"horizon": 10, "name": "x"},
        status=JobStatus.FAILED,
        priority=7,
        reference="ref-1",
        created_at=NOW,
        updated_at=NOW + timedelta(minutes=1),
        deadline_at=NOW + timedelta(hours=1),
        finished_at=NOW + timedelta(minutes=1),
        current_step="b",
        attempts=(full_attempt(1), dataclasses.replace(full_attempt(2), step="b", number=1)),
        outputs={"a": {"rows": 3}},
        crashes={"a": 1},
        error=ErrorInfo(kind="step_failed", message="b failed", step="b"),
        updates_key="client.abc",
    )


def stored(row: dict[str, object], table_columns: list[str]) -> dict[str, object]:
    """``row`` as read back: every column present (store-managed ones defaulted)."""
    return {name: row.get(name) for name in table_columns}


def test_job_round_trips_through_rows() -> None:
    job = full_job()
    row = job_to_row(job)
    attempts = [row_to_attempt(r) for r in attempt_rows(job)]

    assert row_to_job(row, WORKFLOW, attempts) == job


def test_job_row_has_a_value_for_every_state_column() -> None:
    managed_by_repository = {"wake_at", "last_seq"}

    assert set(job_to_row(full_job())) == set(jobs.columns.keys()) - managed_by_repository
    assert set(attempt_to_row(uuid4(), 1, full_attempt())) == set(step_attempts.columns.keys())


@pytest.mark.parametrize(
    ("state_class", "mapped"),
    [
        (
            Job,
            {
                "job_id",
                "workflow",
                "workflow_hash",
                "params",
                "status",
                "priority",
                "reference",
                "created_at",
                "updated_at",
                "deadline_at",
                "finished_at",
                "run",
                "current_step",
                "attempts",
                "outputs",
                "crashes",
                "error",
                "updates_key",
                "secret",
                "owner",
                "update_seq",
                "timeout_s",
            },
        ),
        (
            Attempt,
            {
                "attempt_id",
                "step",
                "number",
                "status",
                "created_at",
                "due_at",
                "dispatched_at",
                "started_at",
                "finished_at",
                "last_seen_at",
                "worker_id",
                "run",
                "progress",
                "progress_message",
                "output",
                "error",
                "item_index",
                "iteration",
                "progress_reports",
                "previous_worker_id",
            },
        ),
    ],
)
def test_every_state_field_is_mapped(state_class: type, mapped: set[str]) -> None:
    # A new field in the engine state needs a column, a migration and a mapping:
    # this fails until segue.store.mapping (and this list) know about it.
    assert {f.name for f in dataclasses.fields(state_class)} == mapped


def test_attempt_rows_are_numbered_by_position() -> None:
    job = full_job()

    rows = attempt_rows(job)

    assert [r["ordinal"] for r in rows] == [1, 2]
    assert [r["attempt_id"] for r in rows] == [a.attempt_id for a in job.attempts]
    assert all(r["job_id"] == job.job_id for r in rows)


def test_minimal_attempt_round_trips_with_nulls() -> None:
    attempt = Attempt(
        attempt_id=uuid4(), step="a", number=1, status=AttemptStatus.SCHEDULED, created_at=NOW
    )
    row = attempt_to_row(uuid4(), 1, attempt)

    assert row["error"] is None
    assert row["output"] is None
    assert row_to_attempt(row) == attempt


def test_json_columns_hold_json_native_values() -> None:
    token = uuid4()
    job = dataclasses.replace(full_job(), params={"id": token, "at": NOW})

    row = job_to_row(job)

    assert row["params"] == {"id": str(token), "at": "2024-05-01T12:00:00Z"}
    assert row["error"] == {
        "kind": "step_failed",
        "message": "b failed",
        "step": "b",
        "details": None,
    }


def test_statuses_are_stored_as_their_text_value() -> None:
    job = full_job()

    assert job_to_row(job)["status"] == "failed"
    assert attempt_to_row(job.job_id, 1, job.attempts[0])["status"] == "failed"


@pytest.mark.parametrize("field_name", ["created_at", "updated_at", "deadline_at", "finished_at"])
def test_naive_job_datetimes_are_refused(field_name: str) -> None:
    changes: dict[str, Any] = {field_name: datetime(2024, 5, 1, 12, 0)}
    job = dataclasses.replace(full_job(), **changes)

    with pytest.raises(ValueError, match=rf"job\.{field_name} must be a timezone-aware"):
        job_to_row(job)


def test_naive_attempt_datetimes_are_refused() -> None:
    attempt = dataclasses.replace(full_attempt(), last_seen_at=datetime(2024, 5, 1))

    with pytest.raises(ValueError, match=r"attempt\.last_seen_at"):
        attempt_to_row(uuid4(), 1, attempt)


def test_workflow_definition_round_trips() -> None:
    row = workflow_to_row(WORKFLOW, "sha256:abc")

    assert row["name"] == "w"
    assert row["version"] == "3"
    assert row_to_workflow(row) == WORKFLOW


def test_workflow_with_branches_and_parameters_round_trips_through_json() -> None:
    workflow = Workflow.model_validate(
        {
            "name": "branchy",
            "parameters": [
                {"name": "horizon", "type": "integer", "default": 10, "minimum": 1},
                {"name": "mode", "type": "string", "enum": [{"value": "fast"}]},
            ],
            "steps": [
                {
                    "name": "a",
                    "queue": "a",
                    "retry": {"max_attempts": 3, "non_retryable": ["ValueError"]},
                    "next": {
                        "branches": [
                            {
                                "when": {"not": {"var": "params.horizon", "op": ">", "value": 5}},
                                "goto": "b",
                            }
                        ],
                        "default": None,
                    },
                },
                {"name": "b", "queue": "b", "timeout_s": 30},
            ],
        }
    )
    # What the database hands back: the definition after a trip through JSON text.
    row = {"definition": json.loads(json.dumps(workflow_to_row(workflow, "h")["definition"]))}

    assert row_to_workflow(row) == workflow


def test_record_rows_continue_from_first_seq() -> None:
    job_id = uuid4()
    records = [Record("step_dispatched", {"attempt": 1}), Record("step_started")]

    rows = record_rows(job_id, 4, records, NOW)

    assert rows == [
        {"job_id": job_id, "seq": 4, "type": "step_dispatched", "data": {"attempt": 1}, "at": NOW},
        {"job_id": job_id, "seq": 5, "type": "step_started", "data": {}, "at": NOW},
    ]


def test_record_rows_without_time_leave_it_to_the_database() -> None:
    rows = record_rows(uuid4(), 1, [Record("job_submitted")], None)

    assert "at" not in rows[0]


def test_job_view_shows_the_stored_job() -> None:
    job = full_job()
    row = {**job_to_row(job), "wake_at": None, "last_seq": 0}
    attempt_views = [row_to_attempt_view(r) for r in attempt_rows(job)]

    view = row_to_job_view(row, attempt_views)

    assert view.job_id == job.job_id
    assert (view.workflow, view.workflow_version, view.workflow_hash) == ("w", "3", "sha256:abc")
    assert view.status is JobStatus.FAILED
    assert view.error == job.error
    assert [a.attempt_id for a in view.attempts] == [a.attempt_id for a in job.attempts]
    assert view.attempts[0].error == job.attempts[0].error
    assert (view.attempts[0].item_index, view.attempts[0].iteration) == (4, 3)
    assert view.history == []
