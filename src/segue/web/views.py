"""What the pages show, made from what the reader returned: pure functions.

Texts here are plain: the templates escape every one of them (autoescape), so a
parameter, reference or error message is always shown as the text it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from segue.protocol.messages import JobStatus
from segue.web.progress import StepChart, step_charts
from segue.web.reader import JobRecord
from segue.web.timeline import Tally, TimelineEntry, error_text, tally, timeline

MAX_JSON_CHARS = 100_000
"""Longest params or outputs shown on a page (``segue jobs show --json`` has all)."""


@dataclass(frozen=True, slots=True)
class ErrorView:
    """A job's or an attempt's error."""

    kind: str
    message: str
    step: str | None
    details: str | None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One row of a job page's attempts table."""

    run: int
    step: str
    item: str
    iteration: int
    number: int
    status: str
    worker: str
    started_at: datetime | None
    finished_at: datetime | None
    duration: str
    progress: float | None
    progress_message: str
    error: str


@dataclass(frozen=True, slots=True)
class JobDetail:
    """Everything a job page shows."""

    job_id: UUID
    status: str
    live: bool
    workflow: str
    workflow_version: str
    workflow_hash: str
    priority: int
    run: int
    reference: str | None
    owner: str | None
    current_step: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    duration: str
    error: ErrorView | None
    params: str
    outputs: str
    attempts: list[AttemptRow]
    timeline: list[TimelineEntry]
    charts: list[StepChart]
    tally: Tally
    earlier_events: int


def job_detail(record: JobRecord, now: datetime) -> JobDetail:
    """The job page of ``record``; ``now`` ends the duration of a job still running."""
    job = record.job
    status = JobStatus(job["status"])
    created_at = job["created_at"]
    return JobDetail(
        job_id=UUID(str(job["job_id"])),
        status=status.value,
        live=not status.is_terminal,
        workflow=job["workflow_name"],
        workflow_version=job["workflow_version"],
        workflow_hash=job["workflow_hash"],
        priority=job["priority"],
        run=job["run"],
        reference=job["reference"],
        owner=job["owner"],
        current_step=job["current_step"],
        created_at=created_at,
        updated_at=job["updated_at"],
        finished_at=job["finished_at"],
        duration=duration(created_at, job["finished_at"] or now),
        error=error_view(job["error"]),
        params=pretty_json(job["params"]),
        outputs=pretty_json(job["outputs"]),
        attempts=[attempt_row(attempt, now) for attempt in record.attempts],
        timeline=timeline(record.events, created_at),
        charts=step_charts(record.attempts, record.events),
        tally=tally(record.events),
        earlier_events=record.earlier_events,
    )


def attempt_row(attempt: Mapping[str, Any], now: datetime) -> AttemptRow:
    """A row of the attempts table; a running attempt's duration runs to ``now``."""
    started, finished = attempt["started_at"], attempt["finished_at"]
    return AttemptRow(
        run=attempt["run"],
        step=attempt["step"],
        item="" if attempt["item_index"] is None else str(attempt["item_index"]),
        iteration=attempt["iteration"],
        number=attempt["number"],
        status=attempt["status"],
        worker=attempt["worker_id"] or "",
        started_at=started,
        finished_at=finished,
        duration="" if started is None else duration(started, finished or now),
        # A step that returned is done, whatever its last report said.
        progress=1.0 if attempt["status"] == "succeeded" else attempt["progress"],
        progress_message=attempt["progress_message"] or "",
        error=error_text(attempt["error"]),
    )


def error_view(value: Any) -> ErrorView | None:
    """A stored error (a JSON object), or None."""
    if not isinstance(value, Mapping):
        return None
    step, details = value.get("step"), value.get("details")
    return ErrorView(
        kind=str(value.get("kind", "")),
        message=str(value.get("message", "")),
        step=None if step is None else str(step),
        details=None if details is None else str(details),
    )


def pretty_json(value: Any, limit: int = MAX_JSON_CHARS) -> str:
    """Indented JSON, cut after ``limit`` characters (saying how much was left out)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def duration(start: datetime, end: datetime) -> str:
    """``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    for unit, size, small, small_size in (
        ("d", 86_400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            return f"{whole // size} {unit} {(whole % size) // small_size} {small}"
    return f"{whole} s"


def statuses_shown(typed: Sequence[str]) -> list[tuple[str, bool]]:
    """Every status with whether it was ticked (the form's check boxes)."""
    ticked = {name.strip().lower() for value in typed for name in value.split(",")}
    return [(status.value, status.value in ticked) for status in JobStatus]
