"""The asyncio repository: jobs under row locks, history, timers and the outbox.

Every incoming message is handled in one :meth:`Store.transaction`: lock the job
row (:meth:`JobTransaction.lock_job`), let the engine decide, then save the new
state, its history entries and its outgoing messages
(:meth:`JobTransaction.save_job`) so that all of it commits or none of it does.
After the commit, the outbox rows are published and deleted
(:meth:`Store.claim_outbox`); a relay loop does the same for rows a crash left
behind. The sweeper takes due jobs with :meth:`JobTransaction.due_jobs`, and
several replicas can do all of this at once: locks are row locks, and the
sweeper and relay skip rows another replica holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from segue.engine.effects import Record
from segue.engine.state import Attempt, Job
from segue.errors import SegueError
from segue.protocol.messages import AttemptView, HistoryEntry, JobStatus, JobView
from segue.store.mapping import (
    Row,
    attempt_rows,
    attempt_to_row,
    job_to_row,
    record_rows,
    row_to_attempt,
    row_to_attempt_view,
    row_to_history_entry,
    row_to_job,
    row_to_job_view,
    row_to_workflow,
    workflow_to_row,
)
from segue.store.tables import job_events, jobs, outbox, step_attempts, workflow_definitions
from segue.store.urls import async_url
from segue.workflows.model import Workflow

# Columns fixed when a job is created; save_job never rewrites them.
_IMMUTABLE_JOB_COLUMNS = frozenset(
    {"job_id", "workflow_name", "workflow_version", "workflow_hash", "created_at"}
)
_UPSERT_KEY_COLUMNS = frozenset({"attempt_id", "job_id"})


class StoreError(SegueError):
    """The database refused an operation the engine's state said was valid."""


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish once the transaction that wrote it has committed."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    priority: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StoredOutboxMessage(OutboxMessage):
    """An outbox message as stored, with the row ``id`` to delete once published."""

    id: int


class DefinitionCache:
    """Parsed workflow definitions by content hash.

    Definitions are immutable, so a parsed one never goes stale. Only definitions
    read back from the database are cached: one written by a transaction that
    may still roll back is not.
    """

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}

    async def get_many(
        self, connection: AsyncConnection, hashes: Iterable[str]
    ) -> dict[str, Workflow]:
        """The definitions with these hashes, loading the missing ones in one query."""
        wanted = set(hashes)
        missing = wanted - self._workflows.keys()
        if missing:
            query = select(workflow_definitions).where(
                workflow_definitions.c.content_hash.in_(missing)
            )
            for row in (await connection.execute(query)).mappings():
                self._workflows[row["content_hash"]] = row_to_workflow(row)
        absent = wanted - self._workflows.keys()
        if absent:
            raise StoreError(f"workflow definitions not found: {sorted(absent)}")
        return {content_hash: self._workflows[content_hash] for content_hash in wanted}


class JobTransaction:
    """Job operations inside one database transaction (see :meth:`Store.transaction`).

    Writes return the ids of the outbox rows they wrote: publish those rows
    (:meth:`Store.claim_outbox`) once the transaction has committed.
    """

    def __init__(self, connection: AsyncConnection, definitions: DefinitionCache) -> None:
        self._connection = connection
        self._definitions = definitions

    async def lock_job(self, job_id: UUID) -> Job | None:
        """The job, its row locked until the transaction ends; None if there is none."""
        query = select(jobs).where(jobs.c.job_id == job_id).with_for_update()
        row = (await self._connection.execute(query)).mappings().first()
        if row is None:
            return None
        return (await self._load_jobs([row]))[0]

    async def due_jobs(self, now: datetime, limit: int) -> list[Job]:
        """Up to ``limit`` jobs whose wake-up time has come, earliest first, locked.

        Jobs another transaction holds are skipped, so concurrent sweepers get
        disjoint sets.
        """
        query = (
            select(jobs)
            .where(jobs.c.wake_at <= now)
            .order_by(jobs.c.wake_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = (await self._connection.execute(query)).mappings().all()
        return await self._load_jobs(rows)

    async def insert_job(
        self,
        job: Job,
        records: Sequence[Record],
        outbox: Sequence[OutboxMessage],
        wake_at: datetime | None,
        *,
        at: datetime | None = None,
    ) -> list[int] | None:
        """Store a new job with its attempts, history and outgoing messages.

        Returns the ids of the outbox rows written, or None, having written
        nothing, when a job with this id exists already (a duplicate submission
        that raced ours). History entries are stamped ``at``, or with the
        transaction's time when it is None.
        """
        await self._insert_definition(job.workflow, job.workflow_hash)
        row = {**job_to_row(job), "wake_at": wake_at, "last_seq": len(records)}
        query = (
            pg_insert(jobs)
            .values(row)
            .on_conflict_do_nothing(index_elements=[jobs.c.job_id])
            .returning(jobs.c.job_id)
        )
        if (await self._connection.execute(query)).first() is None:
            return None
        await self._execute_many(insert(step_attempts), attempt_rows(job))
        await self._execute_many(insert(job_events), record_rows(job.job_id, 1, records, at))
        return await self._insert_outbox(outbox)

    async def save_job(
        self,
        before: Job,
        after: Job,
        records: Sequence[Record],
        outbox: Sequence[OutboxMessage],
        wake_at: datetime | None,
        *,
        at: datetime | None = None,
    ) -> list[int]:
        """Store the job's new state, append its history and write outgoing messages.

        ``before`` is the state :meth:`lock_job` returned; only attempts that are
        new or differ from ``before`` are written. History entries continue the
        stored sequence and are stamped ``at`` (default: the transaction's time).
        Returns the ids of the outbox rows written.
        """
        if after.job_id != before.job_id or after.workflow_hash != before.workflow_hash:
            raise ValueError("save_job: before and after must be the same job and workflow")
        last_seq = await self._update_job(before, after, len(records), wake_at)
        await self._upsert_attempts(_changed_attempt_rows(before, after))
        first_seq = last_seq - len(records) + 1
        await self._execute_many(
            insert(job_events), record_rows(after.job_id, first_seq, records, at)
        )
        return await self._insert_outbox(outbox)

    async def _update_job(
        self, before: Job, after: Job, record_count: int, wake_at: datetime | None
    ) -> int:
        """Update the job row; return its new ``last_seq``."""
        values: dict[str, Any] = {"wake_at": wake_at, "last_seq": jobs.c.last_seq + record_count}
        if after is not before:
            row = job_to_row(after)
            values.update({k: v for k, v in row.items() if k not in _IMMUTABLE_JOB_COLUMNS})
        query = (
            update(jobs)
            .where(jobs.c.job_id == after.job_id)
            .values(values)
            .returning(jobs.c.last_seq)
        )
        last_seq: int | None = (await self._connection.execute(query)).scalar()
        if last_seq is None:
            raise StoreError(f"job {after.job_id} is not stored: insert it before saving it")
        return last_seq

    async def _upsert_attempts(self, rows: list[dict[str, Any]]) -> None:
        query = pg_insert(step_attempts)
        changes = {
            column.name: query.excluded[column.name]
            for column in step_attempts.columns
            if column.name not in _UPSERT_KEY_COLUMNS
        }
        upsert = query.on_conflict_do_update(
            index_elements=[step_attempts.c.attempt_id], set_=changes
        )
        await self._execute_many(upsert, rows)

    async def _insert_definition(self, workflow: Workflow, content_hash: str) -> None:
        query = (
            pg_insert(workflow_definitions)
            .values(workflow_to_row(workflow, content_hash))
            .on_conflict_do_nothing(index_elements=[workflow_definitions.c.content_hash])
        )
        await self._connection.execute(query)

    async def _insert_outbox(self, messages: Sequence[OutboxMessage]) -> list[int]:
        if not messages:
            return []
        query = insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True)
        result = await self._connection.execute(query, [_outbox_row(m) for m in messages])
        return list(result.scalars().all())

    async def _execute_many(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._connection.execute(statement, rows)

    async def _load_jobs(self, rows: Sequence[Row]) -> list[Job]:
        """Jobs for these ``jobs`` rows: attempts and definitions in one query each."""
        if not rows:
            return []
        attempts = await _attempts_by_job(self._connection, [row["job_id"] for row in rows])
        workflows = await self._definitions.get_many(
            self._connection, {row["workflow_hash"] for row in rows}
        )
        return [
            row_to_job(
                row,
                workflows[row["workflow_hash"]],
                [row_to_attempt(a) for a in attempts[row["job_id"]]],
            )
            for row in rows
        ]


class OutboxBatch:
    """Outbox rows claimed by :meth:`Store.claim_outbox`, locked until the context exits.

    Publish the messages, then call :meth:`done` with the ids that were
    published; those rows are deleted when the context exits normally.
    """

    def __init__(
        self, connection: AsyncConnection | None, messages: list[StoredOutboxMessage]
    ) -> None:
        self._connection = connection
        self.messages = messages

    def __iter__(self) -> Iterator[StoredOutboxMessage]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    async def done(self, ids: Iterable[int]) -> None:
        """Delete these published rows (at commit); ids must belong to this batch."""
        published = set(ids)
        unknown = published - {message.id for message in self.messages}
        if unknown:
            raise ValueError(f"outbox ids not in this batch: {sorted(unknown)}")
        if not published or self._connection is None:
            return
        await self._connection.execute(delete(outbox).where(outbox.c.id.in_(published)))


class Store:
    """The repository: one per process, around one async connection pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._definitions = DefinitionCache()

    @classmethod
    async def connect(cls, database_url: str | URL, pool_size: int = 10) -> Store:
        """A store on ``database_url`` (any PostgreSQL URL; asyncpg is used).

        Connections are opened lazily; call :meth:`ping` to check the database.
        """
        engine = create_async_engine(
            async_url(database_url), pool_size=pool_size, pool_pre_ping=True
        )
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for health checks and tests)."""
        return self._engine

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[JobTransaction]:
        """One transaction: committed on normal exit, rolled back on an exception."""
        async with self._engine.begin() as connection:
            yield JobTransaction(connection, self._definitions)

    @asynccontextmanager
    async def claim_outbox(
        self,
        ids: Sequence[int] | None = None,
        older_than: datetime | None = None,
        limit: int = 100,
    ) -> AsyncIterator[OutboxBatch]:
        """Lock up to ``limit`` outbox rows (oldest id first) for publishing.

        Select by ``ids`` (right after a commit) and/or by ``created_at <
        older_than`` (the relay picking up what a crash left). Rows another
        claimer holds are skipped. Rows passed to :meth:`OutboxBatch.done` are
        deleted when the context exits normally; on an exception none are.
        """
        if ids is not None and not ids:
            yield OutboxBatch(None, [])
            return
        query = _outbox_query(ids, older_than, limit)
        async with self._engine.begin() as connection:
            rows = (await connection.execute(query)).mappings().all()
            yield OutboxBatch(connection, [_row_to_outbox_message(row) for row in rows])

    async def outbox_size(self) -> int:
        """How many messages wait in the outbox."""
        async with self._engine.connect() as connection:
            count = await connection.scalar(select(func.count()).select_from(outbox))
        return int(count or 0)

    async def job_view(self, job_id: UUID, include_history: bool = True) -> JobView | None:
        """The job as shown to users (attempts, and history unless excluded); None if absent."""
        async with self._snapshot() as connection:
            query = select(jobs).where(jobs.c.job_id == job_id)
            row = (await connection.execute(query)).mappings().first()
            if row is None:
                return None
            attempts = await _attempts_by_job(connection, [job_id])
            history = await _history(connection, job_id) if include_history else []
        return row_to_job_view(row, _attempt_views(attempts[job_id]), history)

    async def list_jobs(self, status: JobStatus | None = None, limit: int = 100) -> list[JobView]:
        """The most recently updated jobs (of one status, if given), without history."""
        query = select(jobs).order_by(jobs.c.updated_at.desc(), jobs.c.job_id).limit(limit)
        if status is not None:
            query = query.where(jobs.c.status == status.value)
        async with self._snapshot() as connection:
            rows = (await connection.execute(query)).mappings().all()
            attempts = await _attempts_by_job(connection, [row["job_id"] for row in rows])
        return [row_to_job_view(row, _attempt_views(attempts[row["job_id"]])) for row in rows]

    async def purge_finished_jobs(self, updated_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` terminal jobs not updated since ``updated_before``.

        Their attempts and history go with them. Jobs another transaction holds
        are skipped. Returns how many were deleted: call again while it is ``limit``.
        """
        terminal = [status.value for status in JobStatus if status.is_terminal]
        victims = (
            select(jobs.c.job_id)
            .where(jobs.c.status.in_(terminal), jobs.c.updated_at < updated_before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        query = delete(jobs).where(jobs.c.job_id.in_(victims.scalar_subquery()))
        async with self._engine.begin() as connection:
            result = await connection.execute(query)
        return result.rowcount

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query (readiness)."""
        async with self._engine.connect() as connection:
            await connection.scalar(select(1))

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection whose queries all see one consistent snapshot."""
        async with self._engine.connect() as connection:
            read_only = await connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            yield read_only


async def _attempts_by_job(
    connection: AsyncConnection, job_ids: Sequence[UUID]
) -> Mapping[UUID, list[Row]]:
    """``step_attempts`` rows of these jobs, by job, each list in ordinal order."""
    by_job: defaultdict[UUID, list[Row]] = defaultdict(list)
    if not job_ids:
        return by_job
    query = (
        select(step_attempts)
        .where(step_attempts.c.job_id.in_(job_ids))
        .order_by(step_attempts.c.job_id, step_attempts.c.ordinal)
    )
    for row in (await connection.execute(query)).mappings():
        by_job[row["job_id"]].append(row)
    return by_job


async def _history(connection: AsyncConnection, job_id: UUID) -> list[HistoryEntry]:
    query = select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.seq)
    return [row_to_history_entry(row) for row in (await connection.execute(query)).mappings()]


def _attempt_views(rows: Iterable[Row]) -> list[AttemptView]:
    return [row_to_attempt_view(row) for row in rows]


def _changed_attempt_rows(before: Job, after: Job) -> list[dict[str, Any]]:
    """Rows of the attempts of ``after`` that are new or differ from ``before``."""
    old = {attempt.attempt_id: attempt for attempt in before.attempts}
    return [
        attempt_to_row(after.job_id, ordinal, attempt)
        for ordinal, attempt in enumerate(after.attempts, start=1)
        if not _same_attempt(old.get(attempt.attempt_id), attempt)
    ]


def _same_attempt(old: Attempt | None, new: Attempt) -> bool:
    return old is new or old == new


def _outbox_query(
    ids: Sequence[int] | None, older_than: datetime | None, limit: int
) -> Select[Any]:
    query = select(outbox).order_by(outbox.c.id).limit(limit).with_for_update(skip_locked=True)
    if ids is not None:
        query = query.where(outbox.c.id.in_(ids))
    if older_than is not None:
        query = query.where(outbox.c.created_at < older_than)
    return query


def _outbox_row(message: OutboxMessage) -> dict[str, Any]:
    return {
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "body": message.body,
        "headers": message.headers,
        "priority": message.priority,
        "message_id": message.message_id,
    }


def _row_to_outbox_message(row: Row) -> StoredOutboxMessage:
    return StoredOutboxMessage(
        id=row["id"],
        exchange=row["exchange"],
        routing_key=row["routing_key"],
        body=row["body"],
        headers=row["headers"],
        priority=row["priority"],
        message_id=row["message_id"],
    )
