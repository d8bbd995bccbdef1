"""Pure conversions between engine state and table rows (no I/O).

Rows are plain dicts keyed by column name, as SQLAlchemy Core takes and returns
them. JSON columns receive JSON-native values (``to_jsonable_python`` turns UUIDs,
datetimes and models into strings and dicts), so a value read back is what
``json.loads`` would give. Datetimes must be timezone-aware: a naive one is a bug
in the caller and is refused rather than silently taken as UTC or local time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic_core import to_jsonable_python

from segue.engine.effects import Record
from segue.engine.state import Attempt, Job
from segue.protocol.messages import (
    AttemptStatus,
    AttemptView,
    ErrorInfo,
    HistoryEntry,
    JobStatus,
    JobView,
)
from segue.workflows.model import Workflow

Row = Mapping[Any, Any]
"""A result row by column name (SQLAlchemy's ``RowMapping`` or a plain dict)."""


def workflow_to_row(workflow: Workflow, content_hash: str) -> dict[str, Any]:
    """The ``workflow_definitions`` row of a pinned definition."""
    return {
        "content_hash": content_hash,
        "name": workflow.name,
        "version": workflow.version,
        "definition": workflow.model_dump(mode="json", by_alias=True),
    }


def row_to_workflow(row: Row) -> Workflow:
    """Parse the definition stored in a ``workflow_definitions`` row."""
    return Workflow.model_validate(row["definition"])


def job_to_row(job: Job) -> dict[str, Any]:
    """The ``jobs`` columns that mirror the job's state.

    ``wake_at`` and ``last_seq`` are not part of the engine state: the repository
    sets them. Attempts go to their own table (:func:`attempt_rows`).
    """
    return {
        "job_id": job.job_id,
        "workflow_name": job.workflow.name,
        "workflow_version": job.workflow.version,
        "workflow_hash": job.workflow_hash,
        "status": job.status.value,
        "priority": job.priority,
        "reference": job.reference,
        "params": _json(job.params),
        "outputs": _json(job.outputs),
        "crashes": _json(job.crashes),
        "error": error_to_json(job.error),
        "current_step": job.current_step,
        "created_at": aware(job.created_at, "job.created_at"),
        "updated_at": aware(job.updated_at, "job.updated_at"),
        "finished_at": aware(job.finished_at, "job.finished_at"),
        "deadline_at": aware(job.deadline_at, "job.deadline_at"),
        "run": job.run,
        "updates_key": job.updates_key,
        "secret": job.secret,
        "owner": job.owner,
        "update_seq": job.update_seq,
        "timeout_s": job.timeout_s,
    }


def row_to_job(row: Row, workflow: Workflow, attempts: Iterable[Attempt]) -> Job:
    """Rebuild a job from its ``jobs`` row, pinned workflow and attempts (in order)."""
    return Job(
        job_id=row["job_id"],
        workflow=workflow,
        workflow_hash=row["workflow_hash"],
        params=row["params"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        reference=row["reference"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deadline_at=row["deadline_at"],
        finished_at=row["finished_at"],
        run=row["run"],
        updates_key=row["updates_key"],
        secret=row["secret"],
        owner=row["owner"],
        update_seq=row["update_seq"],
        timeout_s=row["timeout_s"],
        current_step=row["current_step"],
        attempts=tuple(attempts),
        outputs=row["outputs"],
        crashes=row["crashes"],
        error=error_from_json(row["error"]),
    )


def attempt_rows(job: Job) -> list[dict[str, Any]]:
    """Rows of every attempt of ``job``, numbered by position (ordinal 1 first)."""
    return [
        attempt_to_row(job.job_id, ordinal, attempt)
        for ordinal, attempt in enumerate(job.attempts, start=1)
    ]


def attempt_to_row(job_id: UUID, ordinal: int, attempt: Attempt) -> dict[str, Any]:
    """The ``step_attempts`` row of ``attempt``, the ``ordinal``-th attempt of its job."""
    return {
        "attempt_id": attempt.attempt_id,
        "job_id": job_id,
        "ordinal": ordinal,
        "step": attempt.step,
        "number": attempt.number,
        "status": attempt.status.value,
        "created_at": aware(attempt.created_at, "attempt.created_at"),
        "due_at": aware(attempt.due_at, "attempt.due_at"),
        "dispatched_at": aware(attempt.dispatched_at, "attempt.dispatched_at"),
        "started_at": aware(attempt.started_at, "attempt.started_at"),
        "finished_at": aware(attempt.finished_at, "attempt.finished_at"),
        "last_seen_at": aware(attempt.last_seen_at, "attempt.last_seen_at"),
        "worker_id": attempt.worker_id,
        "run": attempt.run,
        "progress": attempt.progress,
        "progress_message": attempt.progress_message,
        "output": None if attempt.output is None else _json(attempt.output),
        "error": error_to_json(attempt.error),
        "item_index": attempt.item_index,
        "iteration": attempt.iteration,
        "progress_records": attempt.progress_reports,
        "previous_worker_id": attempt.previous_worker_id,
    }


def row_to_attempt(row: Row) -> Attempt:
    """Rebuild an attempt from its ``step_attempts`` row."""
    return Attempt(
        attempt_id=row["attempt_id"],
        step=row["step"],
        number=row["number"],
        status=AttemptStatus(row["status"]),
        created_at=row["created_at"],
        due_at=row["due_at"],
        dispatched_at=row["dispatched_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        last_seen_at=row["last_seen_at"],
        worker_id=row["worker_id"],
        run=row["run"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        output=row["output"],
        error=error_from_json(row["error"]),
        item_index=row["item_index"],
        iteration=row["iteration"],
        progress_reports=row["progress_records"],
        previous_worker_id=row["previous_worker_id"],
    )


def record_rows(
    job_id: UUID, first_seq: int, records: Sequence[Record], at: datetime | None
) -> list[dict[str, Any]]:
    """``job_events`` rows for ``records``, numbered from ``first_seq``.

    With ``at`` None the column is left out and the database's ``now()`` applies.
    """
    rows: list[dict[str, Any]] = []
    for seq, record in enumerate(records, start=first_seq):
        row: dict[str, Any] = {
            "job_id": job_id,
            "seq": seq,
            "type": record.type,
            "data": _json(record.data),
        }
        if at is not None:
            row["at"] = aware(at, "at")
        rows.append(row)
    return rows


def row_to_attempt_view(row: Row) -> AttemptView:
    """An attempt as shown to users, from its ``step_attempts`` row."""
    return attempt_view(row_to_attempt(row))


def attempt_view(attempt: Attempt) -> AttemptView:
    """The user-facing fields of an attempt (every field of the view is one of the state)."""
    return AttemptView(**{name: getattr(attempt, name) for name in AttemptView.model_fields})


def row_to_history_entry(row: Row) -> HistoryEntry:
    """One history entry, from its ``job_events`` row."""
    return HistoryEntry(seq=row["seq"], type=row["type"], at=row["at"], data=row["data"])


def row_to_job_view(
    row: Row, attempts: Iterable[AttemptView], history: Iterable[HistoryEntry] = ()
) -> JobView:
    """A job as shown to users, from its ``jobs`` row, attempts and history."""
    return JobView(
        job_id=row["job_id"],
        workflow=row["workflow_name"],
        workflow_version=row["workflow_version"],
        workflow_hash=row["workflow_hash"],
        status=JobStatus(row["status"]),
        run=row["run"],
        priority=row["priority"],
        reference=row["reference"],
        owner=row["owner"],
        params=row["params"],
        current_step=row["current_step"],
        outputs=row["outputs"],
        error=error_from_json(row["error"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        attempts=list(attempts),
        history=list(history),
    )


def error_to_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    """An error as stored in a JSON column."""
    return None if error is None else error.model_dump(mode="json")


def error_from_json(value: Mapping[str, Any] | None) -> ErrorInfo | None:
    """An error read back from a JSON column."""
    return None if value is None else ErrorInfo.model_validate(value)


def aware(value: datetime | None, name: str) -> datetime | None:
    """``value`` itself, after checking it is timezone-aware (None passes)."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def rows_affected(status: str) -> int:
    """How many rows a statement touched, from PostgreSQL's command tag ("DELETE 3")."""
    return int(status.split()[-1])


def _json(value: Any) -> Any:
    return to_jsonable_python(value)
