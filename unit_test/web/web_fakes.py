"""A job source in memory, and rows shaped like the reader's, for web page tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from segue.store.listing import Cursor, JobFilter, JobPage, page_from_rows
from segue.web.reader import HistoryRow, JobRecord, WebDatabaseError

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script><b>x</b>"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job_row(job_id: UUID, status: str = "running", **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "job_id": str(job_id),
        "workflow_name": "energy_plan",
        "workflow_version": "1",
        "workflow_hash": "sha256:" + "ab" * 32,
        "status": status,
        "priority": 5,
        "reference": None,
        "params": {"region": "nl"},
        "outputs": {},
        "error": None,
        "current_step": "simulate",
        "created_at": T0,
        "updated_at": at(5),
        "finished_at": None,
        "deadline_at": None,
        "run": 1,
        "owner": "alice",
        "timeout_s": None,
    }
    return row | overrides


def attempt_row(attempt_id: UUID, step: str, number: int = 1, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "attempt_id": str(attempt_id),
        "ordinal": number,
        "step": step,
        "number": number,
        "status": "running",
        "created_at": T0,
        "due_at": None,
        "dispatched_at": T0,
        "started_at": at(1),
        "finished_at": None,
        "last_seen_at": at(3),
        "worker_id": "host:1",
        "run": 1,
        "progress": 0.5,
        "progress_message": "half",
        "error": None,
        "item_index": None,
        "iteration": 1,
    }
    return row | overrides


def event(seq: int, kind: str, seconds: float, **data: Any) -> HistoryRow:
    return HistoryRow(seq, kind, at(seconds), data)


@dataclass
class FakeSource:
    """Jobs in memory; ``down`` makes every read fail as an unreachable database would."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    records: dict[UUID, JobRecord] = field(default_factory=dict)
    down: bool = False
    filters: list[JobFilter] = field(default_factory=list)

    def jobs_page(self, job_filter: JobFilter) -> JobPage:
        self._check()
        self.filters.append(job_filter)
        rows = [
            row
            for row in self.summaries
            if job_filter.after is None
            or (row["created_at"], UUID(row["job_id"]))
            < (job_filter.after.created_at, job_filter.after.job_id)
        ]
        return page_from_rows(rows[: job_filter.limit + 1], job_filter.limit)

    def job(self, job_id: UUID) -> JobRecord | None:
        self._check()
        return self.records.get(job_id)

    def workflow_names(self) -> list[str]:
        self._check()
        return ["energy_plan", "quick_check"]

    def _check(self) -> None:
        if self.down:
            raise WebDatabaseError("cannot connect to the database: connection refused")


def cursor_after(row: dict[str, Any]) -> Cursor:
    return Cursor(row["created_at"], UUID(row["job_id"]))
