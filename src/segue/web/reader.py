"""What the web page reads from PostgreSQL: pages of jobs and one job in full.

:class:`JobSource` is the seam the WSGI application depends on; :class:`JobReader`
is the real one, on psycopg2 (synchronous, for the web server's threads), with
a small pool of its own: every request reads in a read-only, repeatable-read
transaction, and a statement may run for :data:`STATEMENT_TIMEOUT_MS` at most,
so a page can neither change nor hog the database. ``jobs.secret`` is never read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import psycopg2
import psycopg2.extras
import psycopg2.pool

from segue.errors import SegueError
from segue.store.listing import JobFilter, JobPage, ParamStyle, list_query, page_from_rows
from segue.store.urls import asyncpg_dsn

MAX_CONNECTIONS = 4
STATEMENT_TIMEOUT_MS = 5000
WAIT_FOR_CONNECTION_S = 10.0
MAX_EVENTS = 5000
"""History entries shown on a job page: its latest (a map over thousands of items
has long histories; progress alone is bounded per attempt by the engine)."""

JOB_COLUMNS = (
    "job_id, workflow_name, workflow_version, workflow_hash, status, priority, reference,"
    " params, outputs, error, current_step, created_at, updated_at, finished_at,"
    " deadline_at, run, owner, timeout_s"
)
ATTEMPT_COLUMNS = (
    "attempt_id, ordinal, step, number, status, created_at, due_at, dispatched_at,"
    " started_at, finished_at, last_seen_at, worker_id, run, progress, progress_message,"
    " error, item_index, iteration"
)

Row = Mapping[str, Any]


class WebDatabaseError(SegueError):
    """The web page could not read the database (busy, unreachable or too slow)."""


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One entry of a job's history (``job_events``)."""

    seq: int
    type: str
    at: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as stored: its row, its attempts (by ordinal) and its latest history.

    ``earlier_events`` counts the history entries left out before ``events``.
    """

    job: Row
    attempts: Sequence[Row]
    events: Sequence[HistoryRow]
    earlier_events: int = 0


class JobSource(Protocol):
    """What the web page needs to read."""

    def jobs_page(self, job_filter: JobFilter) -> JobPage:
        """One page of jobs, newest first."""
        ...

    def job(self, job_id: UUID) -> JobRecord | None:
        """One job with its attempts and history; None if there is no such job."""
        ...

    def workflow_names(self) -> list[str]:
        """Names of the workflows jobs were submitted for (form suggestions)."""
        ...


class JobReader:
    """:class:`JobSource` on psycopg2; connections are opened when first needed."""

    def __init__(self, database_url: str, max_connections: int = MAX_CONNECTIONS) -> None:
        self._pool = psycopg2.pool.ThreadedConnectionPool(
            0,
            max_connections,
            asyncpg_dsn(database_url),
            connect_timeout=5,
            application_name="segue-web",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
            " -c default_transaction_read_only=on",
        )
        # The pool refuses rather than waits when every connection is out: wait here.
        self._free = threading.BoundedSemaphore(max_connections)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.closeall()

    def jobs_page(self, job_filter: JobFilter) -> JobPage:
        """One page of jobs, newest first (:func:`segue.store.listing.list_query`)."""
        query = list_query(job_filter, ParamStyle.PYFORMAT)
        with self._snapshot() as cursor:
            cursor.execute(query.text, query.params)
            rows = cursor.fetchall()
        return page_from_rows(rows, job_filter.limit)

    def job(self, job_id: UUID) -> JobRecord | None:
        """One job, its attempts and its latest :data:`MAX_EVENTS` history entries."""
        with self._snapshot() as cursor:
            cursor.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = %s::uuid", (str(job_id),)
            )
            job = cursor.fetchone()
            if job is None:
                return None
            cursor.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE job_id = %s::uuid"
                " ORDER BY ordinal",
                (str(job_id),),
            )
            attempts = cursor.fetchall()
            cursor.execute(
                "SELECT seq, type, at, data, count(*) OVER () AS total FROM job_events"
                " WHERE job_id = %s::uuid ORDER BY seq DESC LIMIT %s",
                (str(job_id), MAX_EVENTS),
            )
            events = cursor.fetchall()
        history = [HistoryRow(e["seq"], e["type"], e["at"], e["data"] or {}) for e in events]
        earlier = events[0]["total"] - len(events) if events else 0
        return JobRecord(job, attempts, history[::-1], earlier)

    def workflow_names(self) -> list[str]:
        """Workflow names known to the database (at most 200)."""
        with self._snapshot() as cursor:
            cursor.execute("SELECT DISTINCT name FROM workflow_definitions ORDER BY name LIMIT 200")
            return [row["name"] for row in cursor.fetchall()]

    @contextmanager
    def _snapshot(self) -> Iterator[psycopg2.extras.RealDictCursor]:
        """A cursor in a read-only transaction that sees one snapshot; always ended."""
        if not self._free.acquire(timeout=WAIT_FOR_CONNECTION_S):
            raise WebDatabaseError("every database connection of the web page is busy")
        try:
            connection = self._connection()
            broken = False
            try:
                with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield cursor
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                broken = True
                raise WebDatabaseError(f"the database did not answer: {exc}".strip()) from exc
            finally:
                broken = broken or not _ended(connection)
                self._pool.putconn(connection, close=broken)
        finally:
            self._free.release()

    def _connection(self) -> Any:
        try:
            return self._pool.getconn()
        except psycopg2.Error as exc:
            raise WebDatabaseError(f"cannot connect to the database: {exc}".strip()) from exc


def _ended(connection: Any) -> bool:
    """Roll back the request's transaction; False if the connection is unusable."""
    if connection.closed:
        return False
    try:
        connection.rollback()
    except psycopg2.Error:
        return False
    return True
