"""Listing jobs newest first, a page at a time, with filters.

:func:`list_query` turns a :class:`JobFilter` into SQL and parameters and does
no I/O; :func:`page_from_rows` turns the rows into a :class:`JobPage`;
:func:`fetch_jobs_page` runs the two on an asyncpg connection (``segue jobs
list``). The web page runs the same SQL on psycopg2 (``ParamStyle.PYFORMAT``).

Jobs are ordered by ``created_at DESC, job_id DESC`` (the id breaks ties) and
cut into pages by keyset, never by OFFSET: a page ends with a :class:`Cursor`
naming its last job, and the next page asks for the jobs strictly before it,
``(created_at, job_id) < (cursor)``. A page therefore costs the same however
deep it is, and a job submitted meanwhile never shifts a job onto two pages.
Every filter has an index that walks the jobs in that order (migration 0008):
one status is one ordered index scan; several are one such scan per status,
each stopping after a page, and the newest of those (``UNION ALL``), instead of
a scan that would have to sort every match.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg

from segue.protocol.messages import JobStatus
from segue.store.tables import ERROR_TEXT_SQL

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

SUMMARY_COLUMNS = (
    "job_id",
    "workflow_name",
    "workflow_version",
    "status",
    "current_step",
    "priority",
    "reference",
    "owner",
    "run",
    "created_at",
    "updated_at",
    "finished_at",
    "error",
)
"""What a list shows of each job: never ``params`` or ``outputs`` (they may be
large), never ``secret``."""

NEWEST_FIRST = "ORDER BY created_at DESC, job_id DESC"


class ParamStyle(StrEnum):
    """How parameters are written in the SQL: asyncpg's ``$1`` or psycopg2's ``%s``."""

    NUMBERED = "numbered"
    PYFORMAT = "pyformat"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: its last job. The next page starts strictly after it."""

    created_at: datetime
    job_id: UUID

    def token(self) -> str:
        """The cursor as an opaque, URL-safe token (``--after TOKEN``)."""
        text = f"{self.created_at.astimezone(UTC).isoformat()}|{self.job_id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> Cursor:
        """Read a token made by :meth:`token`; ValueError if it is not one."""
        try:
            padded = token.strip() + "=" * (-len(token.strip()) % 4)
            moment, _, job_id = base64.urlsafe_b64decode(padded).decode().partition("|")
            created_at = datetime.fromisoformat(moment)
            cursor = cls(created_at, UUID(job_id))
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("not a cursor printed by a previous page") from exc
        if created_at.tzinfo is None:
            raise ValueError("not a cursor printed by a previous page")
        return cursor


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs to list, and which page. Empty fields do not filter.

    ``since`` is inclusive and ``until`` exclusive (on ``created_at``);
    ``error_text`` matches anywhere in the error's ``kind: message``, ignoring
    case; ``after`` is the cursor of the previous page.
    """

    statuses: tuple[JobStatus, ...] = ()
    workflow: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    step: str | None = None
    error_text: str | None = None
    owner: str | None = None
    after: Cursor | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("since and until must carry a timezone")


@dataclass(frozen=True, slots=True)
class SqlQuery:
    """A statement and its parameters, in the order the placeholders name them."""

    text: str
    params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    """Why a listed job failed: the parts of its error a list shows."""

    kind: str
    message: str
    step: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One job as a list shows it."""

    job_id: UUID
    workflow: str
    workflow_version: str
    status: JobStatus
    current_step: str | None
    priority: int
    reference: str | None
    owner: str | None
    run: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    error: ErrorSummary | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601, UTC)."""
        error = self.error
        return {
            "job_id": str(self.job_id),
            "workflow": self.workflow,
            "workflow_version": self.workflow_version,
            "status": str(self.status),
            "current_step": self.current_step,
            "priority": self.priority,
            "reference": self.reference,
            "owner": self.owner,
            "run": self.run,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "error": None
            if error is None
            else {"kind": error.kind, "message": error.message, "step": error.step},
        }


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of jobs, newest first; ``next`` is None on the last page."""

    jobs: list[JobSummary]
    next: Cursor | None


class _Placeholders:
    """Collects parameters and writes the placeholder of each in the chosen style."""

    def __init__(self, style: ParamStyle) -> None:
        self._style = style
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}" if self._style is ParamStyle.NUMBERED else "%s"


def list_query(job_filter: JobFilter, style: ParamStyle = ParamStyle.NUMBERED) -> SqlQuery:
    """The statement listing one page of ``job_filter``: one row more than the
    limit, so that :func:`page_from_rows` knows whether another page follows."""
    param = _Placeholders(style)
    columns = ", ".join(SUMMARY_COLUMNS)
    statuses = job_filter.statuses
    if len(statuses) <= 1:
        where = _conditions(job_filter, statuses[0] if statuses else None, param)
        text = f"SELECT {columns} FROM jobs{where} {NEWEST_FIRST}"
    else:
        # Each status's newest page on its own (an ordered index scan that stops
        # after a page), then the newest of those: never a sort of every match.
        branches = " UNION ALL ".join(
            f"(SELECT {columns} FROM jobs{_conditions(job_filter, status, param)}"
            f" {NEWEST_FIRST} LIMIT {param(job_filter.limit + 1)})"
            for status in statuses
        )
        text = f"SELECT {columns} FROM ({branches}) AS listed {NEWEST_FIRST}"
    text += f" LIMIT {param(job_filter.limit + 1)}"
    return SqlQuery(text, tuple(param.values))


def _conditions(job_filter: JobFilter, status: JobStatus | None, param: _Placeholders) -> str:
    """`` WHERE …`` for one status (None: any), or nothing when nothing filters."""
    conditions: list[str] = []
    if status is not None:
        conditions.append(f"status = {param(status.value)}")
    if job_filter.workflow is not None:
        conditions.append(f"workflow_name = {param(job_filter.workflow)}")
    if job_filter.step is not None:
        conditions.append(f"current_step = {param(job_filter.step)}")
    if job_filter.owner is not None:
        conditions.append(f"owner = {param(job_filter.owner)}")
    if job_filter.since is not None:
        conditions.append(f"created_at >= {param(job_filter.since)}::timestamptz")
    if job_filter.until is not None:
        conditions.append(f"created_at < {param(job_filter.until)}::timestamptz")
    if job_filter.error_text is not None:
        pattern = f"%{like_escaped(job_filter.error_text)}%"
        conditions.append(f"error IS NOT NULL AND ({ERROR_TEXT_SQL}) ILIKE {param(pattern)}")
    if job_filter.after is not None:
        after = job_filter.after
        conditions.append(
            f"(created_at, job_id) < ({param(after.created_at)}::timestamptz,"
            f" {param(str(after.job_id))}::uuid)"
        )
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def like_escaped(text: str) -> str:
    """``text`` with LIKE's wildcards (and the escape character) taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def page_from_rows(rows: Sequence[Mapping[str, Any]], limit: int) -> JobPage:
    """The page of rows fetched by :func:`list_query` (up to ``limit + 1`` of them)."""
    jobs = [summary_from_row(row) for row in rows[:limit]]
    if len(rows) <= limit or not jobs:
        return JobPage(jobs, None)
    return JobPage(jobs, Cursor(jobs[-1].created_at, jobs[-1].job_id))


def summary_from_row(row: Mapping[str, Any]) -> JobSummary:
    """A :class:`JobSummary` from a row of :data:`SUMMARY_COLUMNS` (asyncpg or psycopg2)."""
    return JobSummary(
        job_id=UUID(str(row["job_id"])),
        workflow=row["workflow_name"],
        workflow_version=row["workflow_version"],
        status=JobStatus(row["status"]),
        current_step=row["current_step"],
        priority=row["priority"],
        reference=row["reference"],
        owner=row["owner"],
        run=row["run"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        finished_at=None if row["finished_at"] is None else _utc(row["finished_at"]),
        error=error_summary(row["error"]),
    )


def error_summary(value: Any) -> ErrorSummary | None:
    """The kind, message and step of a stored error (None: no error)."""
    if not isinstance(value, Mapping):
        return None
    step = value.get("step")
    return ErrorSummary(
        kind=str(value.get("kind", "")),
        message=str(value.get("message", "")),
        step=None if step is None else str(step),
    )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


async def fetch_jobs_page(connection: asyncpg.Connection, job_filter: JobFilter) -> JobPage:
    """Run :func:`list_query` on ``connection`` (one whose ``jsonb`` codec decodes JSON).

    The plan is made for these values (a custom plan), even on connections that
    plan generically: how many jobs a status or an error text matches decides
    which index is best.
    """
    query = list_query(job_filter, ParamStyle.NUMBERED)
    async with connection.transaction():
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await connection.fetch(query.text, *query.params)
    return page_from_rows(rows, job_filter.limit)
