"""The repository on asyncpg: jobs under row locks, history, timers and the outbox.

Messages are handled in batches, each in one :meth:`Store.transaction`: lock the
jobs of the batch (:meth:`JobTransaction.lock_jobs`, in job-id order so that
replicas never deadlock), let the engine decide, then write every job's new
state, its history entries and the outgoing messages of the batch with one
multi-row statement per table (:meth:`JobTransaction.write`), so that all of it
commits or none of it does. After the commit the outgoing messages are
published from memory; their outbox rows are deleted once confirmed
(:meth:`JobTransaction.delete_outbox`, usually inside the next batch's
transaction), and a relay publishes what a crash left behind
(:meth:`Store.claim_outbox`). The sweeper takes due jobs with
:meth:`JobTransaction.due_jobs`. Locks are row locks, and the sweeper and the
relay skip rows another replica holds, so several replicas can run at once.

Every statement is plain SQL with ``$n`` parameters: asyncpg prepares each once
per connection and reuses it. JSON travels as text (encoded here with
pydantic-core, decoded by the connection's ``jsonb`` codec).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic_core import to_json

from segue.engine.effects import Record
from segue.engine.estimates import estimate_queue
from segue.engine.state import Attempt, Job
from segue.errors import SegueError
from segue.protocol.envelope import Outgoing
from segue.protocol.messages import HistoryEntry, JobStatus, JobView, QueueEstimate
from segue.store.listing import JobFilter, JobPage, fetch_jobs_page
from segue.store.mapping import (
    Row,
    aware,
    error_to_json,
    row_to_attempt,
    row_to_attempt_view,
    row_to_history_entry,
    row_to_job,
    row_to_job_view,
    rows_affected,
    workflow_to_row,
)
from segue.store.queueing import queue_figures
from segue.store.urls import asyncpg_dsn
from segue.workflows.model import Workflow

TERMINAL_STATUSES = [status.value for status in JobStatus if status.is_terminal]


class StoreError(SegueError):
    """The database refused an operation the engine's state said was valid."""


class ConcurrentInsertError(StoreError):
    """Another transaction stored a job this one was inserting: try the batch again."""


@dataclass(frozen=True, slots=True)
class Locked:
    """A job as locked in a transaction, with the number of history entries stored."""

    job: Job
    last_seq: int


@dataclass(frozen=True, slots=True)
class JobWrite:
    """What to store for one job: its state ``after`` the batch's events.

    ``before`` is the locked state (None: a new job, inserted); ``last_seq`` the
    history entries stored so far, which ``records`` continue.
    """

    before: Job | None
    after: Job
    last_seq: int
    records: Sequence[Record]
    wake_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingCancel:
    """A cancel of a job that was not submitted (yet): its submission will end it."""

    job_id: UUID
    reason: str
    requester: str | None = None
    admin: bool = False


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row claimed for publishing: its id and the message as stored."""

    id: int
    message: Outgoing


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    """An outbox row the relay set aside, and why."""

    id: int
    exchange: str
    routing_key: str
    failures: int
    last_error: str | None
    quarantined_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxClaim:
    """Outbox rows locked for publishing; ``delete`` removes the published ones at commit."""

    rows: list[OutboxRow]
    delete: Callable[[Sequence[int]], Awaitable[None]]


def to_json_text(value: Any) -> str:
    """A JSON-ready value (UUIDs, datetimes and models allowed) as JSON text."""
    return to_json(value).decode()


def _optional_json(value: Any) -> str | None:
    return None if value is None else to_json_text(value)


WRITE_SQL = """
WITH inserted AS (
    INSERT INTO jobs (job_id, workflow_name, workflow_version, workflow_hash, status, priority,
        reference, params, outputs, crashes, error, current_step, created_at, updated_at,
        finished_at, deadline_at, run, wake_at, last_seq, updates_key, secret, owner,
        update_seq, timeout_s)
    SELECT t.job_id, t.workflow_name, t.workflow_version, t.workflow_hash, t.status, t.priority,
        t.reference, t.params::jsonb, t.outputs::jsonb, t.crashes::jsonb, t.error::jsonb,
        t.current_step, t.created_at, t.updated_at, t.finished_at, t.deadline_at, t.run,
        t.wake_at, t.last_seq, t.updates_key, t.secret, t.owner, t.update_seq, t.timeout_s
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int2[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
        $13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[],
        $17::int4[], $18::timestamptz[], $19::int4[], $20::text[], $67::text[], $68::text[],
        $69::int4[], $73::float8[])
      AS t(job_id, workflow_name, workflow_version, workflow_hash, status, priority, reference,
        params, outputs, crashes, error, current_step, created_at, updated_at, finished_at,
        deadline_at, run, wake_at, last_seq, updates_key, secret, owner, update_seq, timeout_s)
    ON CONFLICT (job_id) DO NOTHING
    RETURNING job_id
), updated AS (
    UPDATE jobs AS j SET
        status = u.status, priority = u.priority, current_step = u.current_step,
        params = COALESCE(u.params::jsonb, j.params),
        outputs = COALESCE(u.outputs::jsonb, j.outputs),
        crashes = COALESCE(u.crashes::jsonb, j.crashes),
        error = CASE WHEN u.error_set THEN u.error::jsonb ELSE j.error END,
        updated_at = u.updated_at, finished_at = u.finished_at, deadline_at = u.deadline_at,
        run = u.run, wake_at = u.wake_at, last_seq = u.last_seq, update_seq = u.update_seq
    FROM unnest($21::uuid[], $22::text[], $23::int2[], $24::text[], $25::text[], $26::text[],
        $27::text[], $28::bool[], $29::text[], $30::timestamptz[], $31::timestamptz[],
        $32::timestamptz[], $33::int4[], $34::timestamptz[], $35::int4[], $70::int4[])
      AS u(job_id, status, priority, current_step, params, outputs, crashes, error_set, error,
        updated_at, finished_at, deadline_at, run, wake_at, last_seq, update_seq)
    WHERE j.job_id = u.job_id
    RETURNING j.job_id
), attempts AS (
    INSERT INTO step_attempts (attempt_id, job_id, ordinal, step, number, status, created_at,
        due_at, dispatched_at, started_at, finished_at, last_seen_at, worker_id, run, progress,
        progress_message, output, error, item_index, iteration, progress_records,
        previous_worker_id)
    SELECT t.attempt_id, t.job_id, t.ordinal, t.step, t.number, t.status, t.created_at,
        t.due_at, t.dispatched_at, t.started_at, t.finished_at, t.last_seen_at, t.worker_id,
        t.run, t.progress, t.progress_message, t.output::jsonb, t.error::jsonb, t.item_index,
        t.iteration, t.progress_records, t.previous_worker_id
    FROM unnest($36::uuid[], $37::uuid[], $38::int4[], $39::text[], $40::int4[], $41::text[],
        $42::timestamptz[], $43::timestamptz[], $44::timestamptz[], $45::timestamptz[],
        $46::timestamptz[], $47::timestamptz[], $48::text[], $49::int4[], $50::float8[],
        $51::text[], $52::text[], $53::text[], $54::int4[], $55::int4[], $71::int4[],
        $74::text[])
      AS t(attempt_id, job_id, ordinal, step, number, status, created_at, due_at,
        dispatched_at, started_at, finished_at, last_seen_at, worker_id, run, progress,
        progress_message, output, error, item_index, iteration, progress_records,
        previous_worker_id)
    WHERE t.job_id IN (SELECT job_id FROM inserted UNION ALL SELECT job_id FROM updated)
    ON CONFLICT (attempt_id) DO UPDATE SET
        ordinal = EXCLUDED.ordinal, step = EXCLUDED.step, number = EXCLUDED.number,
        status = EXCLUDED.status, created_at = EXCLUDED.created_at, due_at = EXCLUDED.due_at,
        dispatched_at = EXCLUDED.dispatched_at, started_at = EXCLUDED.started_at,
        finished_at = EXCLUDED.finished_at, last_seen_at = EXCLUDED.last_seen_at,
        worker_id = EXCLUDED.worker_id, run = EXCLUDED.run, progress = EXCLUDED.progress,
        progress_message = EXCLUDED.progress_message, output = EXCLUDED.output,
        error = EXCLUDED.error, item_index = EXCLUDED.item_index,
        iteration = EXCLUDED.iteration, progress_records = EXCLUDED.progress_records,
        previous_worker_id = EXCLUDED.previous_worker_id
), history AS (
    INSERT INTO job_events (job_id, seq, type, data, at)
    SELECT t.job_id, t.seq, t.type, t.data::jsonb, COALESCE($60::timestamptz, now())
    FROM unnest($56::uuid[], $57::int4[], $58::text[], $59::text[]) AS t(job_id, seq, type, data)
    WHERE t.job_id IN (SELECT job_id FROM inserted UNION ALL SELECT job_id FROM updated)
), sent AS (
    INSERT INTO outbox (exchange, routing_key, body, headers, priority, message_id, mandatory)
    SELECT t.exchange, t.routing_key, t.body, t.headers::jsonb, t.priority, t.message_id,
        t.mandatory
    FROM unnest($61::text[], $62::text[], $63::bytea[], $64::text[], $65::int2[], $66::text[],
        $72::bool[])
      WITH ORDINALITY AS t(exchange, routing_key, body, headers, priority, message_id, mandatory,
        n)
    ORDER BY t.n
    RETURNING id
)
SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM updated) AS updated,
    ARRAY(SELECT id FROM sent ORDER BY id) AS outbox_ids
"""
"""Every write of a batch in one statement. Attempts and history are written only
for jobs it inserted or updated (a job another transaction inserted first gets
none: the caller sees ``inserted`` fall short and rolls back); outbox ids are
drawn in the order of the messages (``WITH ORDINALITY``), so sorted they line up
with them. Columns added later take the parameters after the outbox's ($67 on)."""


HORIZON_FRESH_S = 10.0
"""A replica's horizon is *fresh* while it was written this recently. A replica
silent for longer (frozen, killed, cut off) still holds the others' deadlines
back with its last horizon until it is *released* (see :data:`SHARED_HORIZON_SQL`)."""

SHARED_HORIZON_SQL = """
SELECT min(r.horizon) FROM replica_horizons r
WHERE r.updated_at > now() - make_interval(secs => $1::float8)
   OR NOT EXISTS (
       SELECT 1 FROM replica_horizons d
       WHERE d.drained_at > r.updated_at + make_interval(secs => $1::float8)
         AND NOT EXISTS (
             SELECT 1 FROM replica_horizons f
             WHERE f.updated_at > now() - make_interval(secs => $1::float8)
               AND f.replica_id <> d.replica_id
               AND f.updated_at <= d.drained_at))
"""
"""The earliest horizon that still binds: that of every replica heard from
within $1 seconds, and the last one of every silent replica not released yet.

A silent replica may still hold worker events unhandled (frozen: the broker
keeps them delivered to it), or have had them given back to the queue (killed),
where they wait behind events the others already handled. Either way the
others cannot see them. It is released by a *drain*: a replica saw the events
queue with nothing ready and no consumer beyond the replicas heard from
(``drained_at``), later than ``$1`` seconds after the silent one's last word,
and every other replica heard from has spoken since (its horizon then covers
what it took of the given-back events). A frozen replica's consumer still
counts, so it is never released while it may wake up with old events."""

PUBLISH_HORIZON_SQL = """
WITH gone AS (
    DELETE FROM replica_horizons WHERE updated_at < now() - interval '1 hour'
), others AS (
    SELECT count(*) AS heard FROM replica_horizons
    WHERE updated_at > now() - make_interval(secs => $5::float8) AND replica_id <> $1
)
INSERT INTO replica_horizons (replica_id, horizon, updated_at, drained_at)
SELECT $1, $2, now(), CASE WHEN $3::int = 0 AND $4::int <= heard + 1 THEN now() END
FROM others
ON CONFLICT (replica_id) DO UPDATE SET
    horizon = EXCLUDED.horizon,
    updated_at = EXCLUDED.updated_at,
    drained_at = COALESCE(EXCLUDED.drained_at, replica_horizons.drained_at)
"""
"""Record a replica's horizon ($2), and whether it saw the events queue drained:
nothing ready ($3) and no more consumers ($4) than the replicas heard from, itself
included (NULL: not known). Rows silent for an hour are removed on the way."""


class DefinitionCache:
    """Parsed workflow definitions by content hash, and which hashes are stored.

    Definitions are immutable, so a parsed one never goes stale, and the
    catalog's own definitions can be offered up front. A hash counts as stored
    once it was read back or its insert committed (:meth:`stored`).
    """

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._stored: set[str] = set()

    def offer(self, content_hash: str, workflow: Workflow) -> None:
        """Remember a definition known to have this content hash."""
        self._workflows.setdefault(content_hash, workflow)

    def is_stored(self, content_hash: str) -> bool:
        """Whether the definition is known to be in the database."""
        return content_hash in self._stored

    def stored(self, hashes: Iterable[str]) -> None:
        """Note definitions as stored (after the transaction that wrote them committed)."""
        self._stored.update(hashes)

    async def get_many(
        self, connection: asyncpg.Connection, hashes: Iterable[str]
    ) -> dict[str, Workflow]:
        """The definitions with these hashes, loading the unknown ones in one query."""
        wanted = set(hashes)
        missing = wanted - self._workflows.keys()
        if missing:
            rows = await connection.fetch(
                "SELECT content_hash, definition FROM workflow_definitions"
                " WHERE content_hash = ANY($1::text[])",
                list(missing),
            )
            for row in rows:
                self._workflows[row["content_hash"]] = Workflow.model_validate(row["definition"])
                self._stored.add(row["content_hash"])
        absent = wanted - self._workflows.keys()
        if absent:
            raise StoreError(f"workflow definitions not found: {sorted(absent)}")
        return {content_hash: self._workflows[content_hash] for content_hash in wanted}


class JobTransaction:
    """Job operations inside one database transaction (see :meth:`Store.transaction`)."""

    def __init__(self, connection: asyncpg.Connection, definitions: DefinitionCache) -> None:
        self._connection = connection
        self._definitions = definitions
        self.inserted_definitions: set[str] = set()

    @property
    def connection(self) -> asyncpg.Connection:
        """The transaction's connection, for statements on other tables that must
        commit with the jobs (see :mod:`segue.store.schedules`)."""
        return self._connection

    async def lock_jobs(
        self, job_ids: Iterable[UUID], *, absent_too: bool = False
    ) -> dict[UUID, Locked]:
        """The stored ones of these jobs, their rows locked until the transaction ends.

        Rows are locked in job-id order, so transactions locking overlapping
        sets wait for each other instead of deadlocking. With ``absent_too``
        the job ids themselves are locked first (transaction-level advisory
        locks, also in order), so that two transactions about a job that does
        not exist yet (its submission and a cancel that overtook it) take
        turns: the second then sees what the first committed.
        """
        wanted = sorted(set(job_ids))
        if not wanted:
            return {}
        if absent_too:
            await self._connection.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k ORDER BY k",
                sorted({_advisory_key(job_id) for job_id in wanted}),
            )
        rows = await self._connection.fetch(
            "SELECT * FROM jobs WHERE job_id = ANY($1::uuid[]) ORDER BY job_id FOR UPDATE",
            wanted,
        )
        return {locked.job.job_id: locked for locked in await self._load(rows)}

    async def lock_job(self, job_id: UUID) -> Job | None:
        """One job, its row locked until the transaction ends; None if there is none."""
        locked = (await self.lock_jobs([job_id])).get(job_id)
        return None if locked is None else locked.job

    async def due_jobs(self, now: datetime, limit: int) -> list[Locked]:
        """Up to ``limit`` jobs whose wake-up time has come, earliest first, locked.

        Jobs another transaction holds are skipped, so concurrent sweepers get
        disjoint sets.
        """
        rows = await self._connection.fetch(
            "SELECT * FROM jobs WHERE wake_at <= $1 ORDER BY wake_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        return await self._load(rows)

    async def shared_horizon(self, horizon: datetime, floor: datetime | None = None) -> datetime:
        """``horizon``, held back to the earliest horizon of the replicas that still
        binds (see :data:`SHARED_HORIZON_SQL`), but not before ``floor``."""
        shared = await self._connection.fetchval(SHARED_HORIZON_SQL, HORIZON_FRESH_S)
        held = horizon if shared is None else min(horizon, shared)
        return held if floor is None else max(held, min(floor, horizon))

    async def write(
        self, writes: Sequence[JobWrite], outbox: Sequence[Outgoing], at: datetime | None = None
    ) -> list[int]:
        """Store every job's new state and history, and the outgoing messages.

        All of it is one statement (one round trip, however many jobs):
        new jobs (``before`` None) are inserted, existing ones updated (JSON
        columns only where the object changed), changed attempts upserted,
        history appended (stamped ``at``, default the transaction's time) and
        outbox rows inserted. Raises :class:`ConcurrentInsertError` if another
        transaction stored one of the new jobs meanwhile, and
        :class:`StoreError` if an existing one is not stored: the transaction
        must then be rolled back. Returns the outbox row ids, in message order.
        """
        new = [w for w in writes if w.before is None]
        existing = [w for w in writes if w.before is not None]
        *attempt_columns, progress_records, previous_workers = _attempt_columns(writes)
        if new:
            await self._insert_definitions({w.after.workflow_hash: w.after.workflow for w in new})
        row = await self._connection.fetchrow(
            WRITE_SQL,
            *_insert_job_columns(new),
            *_update_job_columns(existing),
            *attempt_columns,
            *_history_columns(writes),
            aware(at, "at"),
            *_outbox_columns(outbox),
            [w.after.secret for w in new],
            [w.after.owner for w in new],
            [w.after.update_seq for w in new],
            [w.after.update_seq for w in existing],
            progress_records,
            [m.mandatory for m in outbox],
            [w.after.timeout_s for w in new],
            previous_workers,
        )
        if row["inserted"] != len(new):
            raise ConcurrentInsertError(f"{len(new) - row['inserted']} of the new jobs exist")
        if row["updated"] != len(existing):
            raise StoreError("jobs not stored: insert them before saving them")
        return list(row["outbox_ids"])

    async def take_pending_cancels(self, job_ids: Sequence[UUID]) -> dict[UUID, PendingCancel]:
        """Remove and return the pending cancels of these jobs (lock them with
        ``lock_jobs(..., absent_too=True)`` first)."""
        if not job_ids:
            return {}
        rows = await self._connection.fetch(
            "DELETE FROM pending_cancels WHERE job_id = ANY($1::uuid[])"
            " RETURNING job_id, reason, requester, admin",
            list(job_ids),
        )
        return {
            row["job_id"]: PendingCancel(
                row["job_id"], row["reason"], row["requester"], row["admin"]
            )
            for row in rows
        }

    async def add_pending_cancels(self, cancels: Sequence[PendingCancel]) -> None:
        """Keep cancels of jobs not submitted yet (the first one per job counts)."""
        if not cancels:
            return
        await self._connection.execute(
            "INSERT INTO pending_cancels (job_id, reason, requester, admin)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bool[])"
            " ON CONFLICT (job_id) DO NOTHING",
            [c.job_id for c in cancels],
            [c.reason for c in cancels],
            [c.requester for c in cancels],
            [c.admin for c in cancels],
        )

    async def claim_outbox(
        self, older_than: datetime | None, limit: int, skip: Sequence[int] = ()
    ) -> list[OutboxRow]:
        """Lock up to ``limit`` outbox rows (oldest id first) created before ``older_than``.

        Rows another transaction holds and the ids in ``skip`` are passed over.
        """
        rows = await self._connection.fetch(
            "SELECT * FROM outbox WHERE ($1::timestamptz IS NULL OR created_at < $1)"
            " AND quarantined_at IS NULL AND NOT id = ANY($2::bigint[])"
            " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
            older_than,
            list(skip),
            limit,
        )
        return [OutboxRow(row["id"], _row_to_outgoing(row)) for row in rows]

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        """Delete published outbox rows (at commit)."""
        if ids:
            await self._connection.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", list(ids)
            )

    # -- single-job forms of :meth:`write` -------------------------------------------------

    async def insert_job(
        self,
        job: Job,
        records: Sequence[Record],
        outbox: Sequence[Outgoing],
        wake_at: datetime | None,
        *,
        at: datetime | None = None,
    ) -> list[int] | None:
        """Store a new job; None, having written nothing, if the job id is taken."""
        try:
            async with self._connection.transaction():  # a savepoint: undone if taken
                return await self.write([JobWrite(None, job, 0, records, wake_at)], outbox, at)
        except ConcurrentInsertError:
            return None

    async def save_job(
        self,
        before: Job,
        after: Job,
        records: Sequence[Record],
        outbox: Sequence[Outgoing],
        wake_at: datetime | None,
        *,
        at: datetime | None = None,
    ) -> list[int]:
        """Store a locked job's new state, continuing its stored history."""
        if after.job_id != before.job_id or after.workflow_hash != before.workflow_hash:
            raise ValueError("save_job: before and after must be the same job and workflow")
        last_seq = await self._connection.fetchval(
            "SELECT last_seq FROM jobs WHERE job_id = $1", after.job_id
        )
        if last_seq is None:
            raise StoreError(f"job {after.job_id} is not stored: insert it before saving it")
        return await self.write([JobWrite(before, after, last_seq, records, wake_at)], outbox, at)

    # -- statements ------------------------------------------------------------------------

    async def _insert_definitions(self, workflows: Mapping[str, Workflow]) -> None:
        for content_hash, workflow in workflows.items():
            if self._definitions.is_stored(content_hash):
                continue
            row = workflow_to_row(workflow, content_hash)
            await self._connection.execute(
                "INSERT INTO workflow_definitions (content_hash, name, version, definition)"
                " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (content_hash) DO NOTHING",
                row["content_hash"],
                row["name"],
                row["version"],
                to_json_text(row["definition"]),
            )
            self.inserted_definitions.add(content_hash)

    async def _load(self, rows: Sequence[asyncpg.Record]) -> list[Locked]:
        """Jobs for these locked ``jobs`` rows, with their attempts and (cached) definitions.

        The attempts are read by a statement of their own, after the rows are
        locked: a statement sees what was committed when it began, so attempts
        read by the locking statement itself could predate the commit it waited for.
        """
        if not rows:
            return []
        attempts = await _attempts_by_job(self._connection, [row["job_id"] for row in rows])
        workflows = await self._definitions.get_many(
            self._connection, {row["workflow_hash"] for row in rows}
        )
        return [
            Locked(
                row_to_job(
                    row,
                    workflows[row["workflow_hash"]],
                    [row_to_attempt(a) for a in attempts.get(row["job_id"], ())],
                ),
                row["last_seq"],
            )
            for row in rows
        ]


class Store:
    """The repository: one per process, around one asyncpg connection pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.definitions = DefinitionCache()

    @classmethod
    async def connect(cls, database_url: str, pool_size: int = 10) -> Store:
        """A store on ``database_url`` (any PostgreSQL URL).

        Connections are opened as they are needed; call :meth:`ping` to check
        the database.
        """
        pool = await asyncpg.create_pool(
            asyncpg_dsn(database_url),
            min_size=0,
            max_size=pool_size,
            init=_init_connection,
            reset=_end_transaction,
            # Every statement here takes arrays and ids whose plans do not depend on
            # the values: planning once per connection beats planning per call.
            server_settings={"plan_cache_mode": "force_generic_plan"},
        )
        return cls(pool)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[JobTransaction]:
        """One transaction: committed on normal exit, rolled back on an exception."""
        async with self._pool.acquire() as connection, connection.transaction():
            tx = JobTransaction(connection, self.definitions)
            yield tx
        self.definitions.stored(tx.inserted_definitions)

    @asynccontextmanager
    async def claim_outbox(
        self, older_than: datetime | None = None, limit: int = 100, skip: Sequence[int] = ()
    ) -> AsyncIterator[OutboxClaim]:
        """Lock up to ``limit`` outbox rows for publishing (see
        :meth:`JobTransaction.claim_outbox`), until the context exits."""
        async with self.transaction() as tx:
            yield OutboxClaim(await tx.claim_outbox(older_than, limit, skip), tx.delete_outbox)

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        """Delete published outbox rows in a transaction of their own.

        A lost delete only means the relay publishes a message again (consumers
        are idempotent), so this commit does not wait for the disk.
        """
        if not ids:
            return
        listed = ",".join(str(int(row_id)) for row_id in ids)
        async with self._pool.acquire() as connection:
            # One round trip (simple query protocol); the ids are integers we hold.
            await connection.execute(
                "BEGIN; SET LOCAL synchronous_commit = off;"
                f" DELETE FROM outbox WHERE id IN ({listed}); COMMIT"
            )

    async def publish_horizon(
        self,
        replica_id: str,
        horizon: datetime,
        ready: int | None = None,
        consumers: int | None = None,
    ) -> None:
        """Record this replica's events horizon and what it last saw of the events
        queue: ``ready`` events and ``consumers`` (None: not known); see
        :data:`PUBLISH_HORIZON_SQL` and :data:`SHARED_HORIZON_SQL`."""
        async with self._pool.acquire() as connection:
            await connection.execute(
                PUBLISH_HORIZON_SQL,
                replica_id,
                aware(horizon, "horizon"),
                ready,
                consumers,
                HORIZON_FRESH_S,
            )

    async def withdraw_horizon(self, replica_id: str) -> None:
        """Forget this replica's horizon: it stopped consuming events and settled every
        one it took (one that gave events back must stay until it is released)."""
        async with self._pool.acquire() as connection:
            await connection.execute(
                "DELETE FROM replica_horizons WHERE replica_id = $1", replica_id
            )

    async def postpone_wakeup(self, job_id: UUID, until: datetime) -> None:
        """Move a job's wake-up time (a job whose timers could not be saved waits)."""
        async with self._pool.acquire() as connection:
            await connection.execute(
                "UPDATE jobs SET wake_at = $2 WHERE job_id = $1", job_id, aware(until, "until")
            )

    async def quarantine_outbox(self, row_id: int, failures: int, reason: str) -> None:
        """Set aside an outbox row the broker keeps refusing, with the reason: the
        relay no longer tries it (``segue outbox release`` puts it back)."""
        async with self._pool.acquire() as connection:
            await connection.execute(
                "UPDATE outbox SET quarantined_at = now(), failures = $2, last_error = $3"
                " WHERE id = $1",
                row_id,
                failures,
                reason,
            )

    async def release_outbox(self, row_ids: Sequence[int] | None = None) -> int:
        """Put quarantined rows (these, or all of them) back for the relay; returns how many."""
        return await self._count(
            "UPDATE outbox SET quarantined_at = NULL, failures = 0"
            " WHERE quarantined_at IS NOT NULL AND ($1::bigint[] IS NULL OR id = ANY($1))",
            None if row_ids is None else list(row_ids),
        )

    async def quarantined_outbox(self, limit: int = 100) -> list[QuarantinedRow]:
        """Quarantined outbox rows, oldest first."""
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT id, exchange, routing_key, failures, last_error, quarantined_at,"
                " created_at FROM outbox WHERE quarantined_at IS NOT NULL ORDER BY id LIMIT $1",
                limit,
            )
        return [QuarantinedRow(**dict(row)) for row in rows]

    async def outbox_size(self) -> int:
        """How many messages wait in the outbox."""
        async with self._pool.acquire() as connection:
            return int(await connection.fetchval("SELECT count(*) FROM outbox"))

    async def job_view(self, job_id: UUID, include_history: bool = True) -> JobView | None:
        """The job as shown to users (attempts, and history unless excluded); None if absent."""
        async with self._snapshot() as connection:
            row = await connection.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id)
            if row is None:
                return None
            attempts = await _attempts_by_job(connection, [job_id])
            history = await _history(connection, job_id) if include_history else []
        views = [row_to_attempt_view(a) for a in attempts.get(job_id, ())]
        return row_to_job_view(row, views, history)

    async def queue_estimate(self, job_id: UUID, now: datetime) -> QueueEstimate | None:
        """Where the job's waiting step stands in its queue and when it may be done; None
        if no step of it waits. Queries made on read only (see :mod:`segue.store.queueing`)."""
        async with self._snapshot() as connection:
            figures = await queue_figures(connection, self.definitions, job_id, now)
        return None if figures is None else estimate_queue(figures, now)

    async def jobs_page(self, job_filter: JobFilter) -> JobPage:
        """One page of jobs, newest first, filtered (see :mod:`segue.store.listing`)."""
        async with self._snapshot() as connection:
            return await fetch_jobs_page(connection, job_filter)

    async def list_jobs(self, status: JobStatus | None = None, limit: int = 100) -> list[JobView]:
        """The most recently updated jobs (of one status, if given), without history."""
        async with self._snapshot() as connection:
            rows = await connection.fetch(
                "SELECT * FROM jobs WHERE ($1::text IS NULL OR status = $1)"
                " ORDER BY updated_at DESC, job_id LIMIT $2",
                None if status is None else status.value,
                limit,
            )
            attempts = await _attempts_by_job(connection, [row["job_id"] for row in rows])
        return [
            row_to_job_view(row, [row_to_attempt_view(a) for a in attempts.get(row["job_id"], ())])
            for row in rows
        ]

    async def purge_finished_jobs(self, updated_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` terminal jobs not updated since ``updated_before``.

        Their attempts and history go with them. Jobs another transaction holds
        are skipped. Returns how many were deleted: call again while it is ``limit``.
        """
        return await self._count(
            "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs"
            " WHERE status = ANY($1::text[]) AND updated_at < $2"
            " LIMIT $3 FOR UPDATE SKIP LOCKED)",
            TERMINAL_STATUSES,
            updated_before,
            limit,
        )

    async def purge_pending_cancels(self, created_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` cancels of jobs never submitted, kept since before
        ``created_before``. Rows another transaction holds are skipped. Returns how
        many were deleted: call again while it is ``limit``."""
        return await self._count(
            "DELETE FROM pending_cancels WHERE job_id IN (SELECT job_id FROM pending_cancels"
            " WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            aware(created_before, "created_before"),
            limit,
        )

    async def purge_quarantined_outbox(self, quarantined_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` outbox rows quarantined before ``quarantined_before``
        (messages the broker kept refusing that nobody released). Rows another
        transaction holds are skipped. Returns how many were deleted."""
        return await self._count(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
            " WHERE quarantined_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            aware(quarantined_before, "quarantined_before"),
            limit,
        )

    async def _count(self, sql: str, *args: Any) -> int:
        """Run one statement on its own; returns how many rows it touched."""
        async with self._pool.acquire() as connection:
            return rows_affected(await connection.execute(sql, *args))

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query (readiness)."""
        async with self._pool.acquire(timeout=5) as connection:
            await connection.fetchval("SELECT 1")

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        """A read-only connection whose queries all see one consistent snapshot."""
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield connection


async def _init_connection(connection: asyncpg.Connection) -> None:
    """JSON columns: written as text we encoded, read back as Python values.

    The binary format (a version byte, then the text) lets asyncpg decode rows
    that hold ``jsonb`` inside composite values, such as a job's attempts.
    """
    await connection.set_type_codec(
        "jsonb",
        encoder=_jsonb_binary,
        decoder=_jsonb_value,
        schema="pg_catalog",
        format="binary",
    )


JSONB_VERSION = b"\x01"


def _jsonb_binary(text: str) -> bytes:
    return JSONB_VERSION + text.encode()


def _jsonb_value(data: bytes) -> Any:
    if data[:1] != JSONB_VERSION:
        raise ValueError(f"unknown jsonb format version {data[:1]!r}")
    return json.loads(data[1:])


async def _end_transaction(connection: asyncpg.Connection) -> None:
    """Make a connection fit for reuse: the store keeps no session state (no LISTEN,
    advisory or SET outside a transaction), so ending a transaction left open is all
    there is to reset, without the round trip of asyncpg's full reset."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def _attempts_by_job(
    connection: asyncpg.Connection, job_ids: Sequence[UUID]
) -> Mapping[UUID, list[Row]]:
    """``step_attempts`` rows of these jobs, by job, each list in ordinal order."""
    by_job: defaultdict[UUID, list[Row]] = defaultdict(list)
    if not job_ids:
        return by_job
    rows = await connection.fetch(
        "SELECT * FROM step_attempts WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, ordinal",
        list(job_ids),
    )
    for row in rows:
        by_job[row["job_id"]].append(row)
    return by_job


async def _history(connection: asyncpg.Connection, job_id: UUID) -> list[HistoryEntry]:
    rows = await connection.fetch(
        "SELECT seq, type, at, data FROM job_events WHERE job_id = $1 ORDER BY seq", job_id
    )
    return [row_to_history_entry(row) for row in rows]


def _insert_job_columns(writes: Sequence[JobWrite]) -> list[list[Any]]:
    jobs = [w.after for w in writes]
    return [
        [job.job_id for job in jobs],
        [job.workflow.name for job in jobs],
        [job.workflow.version for job in jobs],
        [job.workflow_hash for job in jobs],
        [job.status.value for job in jobs],
        [job.priority for job in jobs],
        [job.reference for job in jobs],
        [to_json_text(job.params) for job in jobs],
        [to_json_text(job.outputs) for job in jobs],
        [to_json_text(job.crashes) for job in jobs],
        [_optional_json(error_to_json(job.error)) for job in jobs],
        [job.current_step for job in jobs],
        [aware(job.created_at, "job.created_at") for job in jobs],
        [aware(job.updated_at, "job.updated_at") for job in jobs],
        [aware(job.finished_at, "job.finished_at") for job in jobs],
        [aware(job.deadline_at, "job.deadline_at") for job in jobs],
        [job.run for job in jobs],
        [aware(w.wake_at, "wake_at") for w in writes],
        [len(w.records) for w in writes],
        [job.updates_key for job in jobs],
    ]


def _update_job_columns(writes: Sequence[JobWrite]) -> list[list[Any]]:
    """Columns of existing jobs; a JSON column is None (kept) when its object is unchanged."""
    afters = [w.after for w in writes]
    pairs = [(w.before, w.after) for w in writes]
    return [
        [job.job_id for job in afters],
        [job.status.value for job in afters],
        [job.priority for job in afters],
        [job.current_step for job in afters],
        [_if_changed(b and b.params, a.params) for b, a in pairs],
        [_if_changed(b and b.outputs, a.outputs) for b, a in pairs],
        [_if_changed(b and b.crashes, a.crashes) for b, a in pairs],
        [b is None or b.error is not a.error for b, a in pairs],
        [_optional_json(error_to_json(job.error)) for job in afters],
        [aware(job.updated_at, "job.updated_at") for job in afters],
        [aware(job.finished_at, "job.finished_at") for job in afters],
        [aware(job.deadline_at, "job.deadline_at") for job in afters],
        [job.run for job in afters],
        [aware(w.wake_at, "wake_at") for w in writes],
        [w.last_seq + len(w.records) for w in writes],
    ]


def _changed_attempts(writes: Sequence[JobWrite]) -> list[tuple[UUID, int, Attempt]]:
    """(job id, ordinal, attempt) of the attempts that are new or differ from the locked state."""
    changed: list[tuple[UUID, int, Attempt]] = []
    for write in writes:
        old = {} if write.before is None else _by_id(write.before.attempts)
        for ordinal, attempt in enumerate(write.after.attempts, start=1):
            previous = old.get(attempt.attempt_id)
            if previous is attempt or previous == attempt:
                continue
            changed.append((write.after.job_id, ordinal, attempt))
    return changed


def _attempt_columns(writes: Sequence[JobWrite]) -> list[list[Any]]:
    """Columns of the attempts that are new or differ from the locked state."""
    changed = _changed_attempts(writes)
    job_ids = [job_id for job_id, _, _ in changed]
    ordinals = [ordinal for _, ordinal, _ in changed]
    attempts = [attempt for _, _, attempt in changed]
    return [
        [a.attempt_id for a in attempts],
        job_ids,
        ordinals,
        [a.step for a in attempts],
        [a.number for a in attempts],
        [a.status.value for a in attempts],
        [aware(a.created_at, "attempt.created_at") for a in attempts],
        [aware(a.due_at, "attempt.due_at") for a in attempts],
        [aware(a.dispatched_at, "attempt.dispatched_at") for a in attempts],
        [aware(a.started_at, "attempt.started_at") for a in attempts],
        [aware(a.finished_at, "attempt.finished_at") for a in attempts],
        [aware(a.last_seen_at, "attempt.last_seen_at") for a in attempts],
        [a.worker_id for a in attempts],
        [a.run for a in attempts],
        [a.progress for a in attempts],
        [a.progress_message for a in attempts],
        [_optional_json(a.output) for a in attempts],
        [_optional_json(error_to_json(a.error)) for a in attempts],
        [a.item_index for a in attempts],
        [a.iteration for a in attempts],
        [a.progress_reports for a in attempts],  # these two: parameters after the outbox's
        [a.previous_worker_id for a in attempts],
    ]


def _history_columns(writes: Sequence[JobWrite]) -> list[list[Any]]:
    """History rows of every job, each continuing its job's stored sequence."""
    job_ids: list[UUID] = []
    seqs: list[int] = []
    types: list[str] = []
    data: list[str] = []
    for write in writes:
        for seq, record in enumerate(write.records, start=write.last_seq + 1):
            job_ids.append(write.after.job_id)
            seqs.append(seq)
            types.append(record.type)
            data.append(to_json_text(record.data))
    return [job_ids, seqs, types, data]


def _outbox_columns(messages: Sequence[Outgoing]) -> list[list[Any]]:
    return [
        [m.exchange for m in messages],
        [m.routing_key for m in messages],
        [m.body for m in messages],
        [to_json_text(m.headers) for m in messages],
        [m.priority for m in messages],
        [m.message_id or "" for m in messages],
    ]


def _advisory_key(job_id: UUID) -> int:
    """The advisory lock key of a job id (64 of its random bits; a collision only
    makes two transactions take turns)."""
    return int.from_bytes(job_id.bytes[8:], "big", signed=True)


def _if_changed(before: Any, after: Any) -> str | None:
    """JSON text of ``after`` unless it is the very object stored before (None: keep)."""
    return None if after is before else to_json_text(after)


def _by_id(attempts: Iterable[Attempt]) -> dict[UUID, Attempt]:
    return {attempt.attempt_id: attempt for attempt in attempts}


def _row_to_outgoing(row: Row) -> Outgoing:
    return Outgoing(
        exchange=row["exchange"],
        routing_key=row["routing_key"],
        body=row["body"],
        message_id=row["message_id"] or None,
        priority=row["priority"],
        headers=dict(row["headers"]),
        mandatory=row["mandatory"],
    )
