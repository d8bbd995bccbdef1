"""The OMOTES tables: what an OMOTES submission carries besides its parameters, and
the output ESDLs of OMOTES tasks.

``omotes_inputs``: one row per OMOTES job (``job_id`` = the OMOTES uuid): the
input ESDL and the whole job reference (``None`` when the client gave none,
which OMOTES workers tell apart from ``""`` when they name the output ESDL).
The gateway writes the row before it submits the job; the Celery bridge reads
it when it dispatches the job's task. Rows are written once (a redelivered
submission changes nothing), deleted when the OMOTES client deletes the job,
and otherwise some time after their job is gone (:meth:`OmotesInputs.purge_orphans`).

``omotes_outputs``: the output ESDL of each step attempt an OMOTES Celery
worker finished, by ``(job_id, attempt_id)``, as the UTF-8 bytes the worker
sent. The bridge writes it before it reports the step succeeded (once: a
redelivered result changes nothing) and the step output carries only a
reference (:mod:`segue.omotes.worker_translate`); the gateway reads it back
for the client's ``JobResult``. Rows go with their job (foreign key, ``ON
DELETE CASCADE``: retention) and when the OMOTES client deletes the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from segue.errors import ConfigurationError, SegueError
from segue.store.mapping import rows_affected
from segue.store.urls import asyncpg_dsn


@dataclass(frozen=True, slots=True)
class OmotesInput:
    """The stored inputs of one OMOTES job."""

    job_id: UUID
    esdl: str
    job_reference: str | None


@dataclass(frozen=True, slots=True)
class OmotesOutput:
    """The output ESDL of one step attempt, as the UTF-8 bytes the worker sent."""

    job_id: UUID
    attempt_id: UUID
    esdl: bytes


class OutputJobGoneError(SegueError):
    """An output ESDL was not stored: its job no longer exists (deleted by retention)."""


TABLES = {"omotes_inputs": "0004", "omotes_outputs": "0007"}
"""The tables the OMOTES drop-in needs, and the migration that makes each."""


async def connect_pool(database_url: str, pool_size: int) -> asyncpg.Pool:
    """An asyncpg pool on ``database_url`` (any PostgreSQL URL), opened lazily."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url), min_size=0, max_size=pool_size
    )
    return pool


async def check_tables(pool: asyncpg.Pool) -> None:
    """Raise :class:`ConfigurationError` unless every table of :data:`TABLES` exists:
    without them submissions or results would fail, so the service must not start."""
    async with pool.acquire() as connection:
        missing = [
            f"{table} (migration {revision})"
            for table, revision in TABLES.items()
            if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        ]
    if missing:
        raise ConfigurationError(
            f"the database has no table {', '.join(missing)} (SEGUE_OMOTES_ENABLED needs it): "
            "run `segue db upgrade`"
        )


class OmotesInputs:
    """``omotes_inputs`` on an asyncpg pool (:meth:`connect`: one of its own)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, database_url: str, pool_size: int = 2) -> OmotesInputs:
        """On a pool of its own on ``database_url`` (any PostgreSQL URL), opened lazily."""
        return cls(await connect_pool(database_url, pool_size))

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()

    async def save(self, inputs: Sequence[OmotesInput]) -> None:
        """Store ``inputs`` in one statement; rows that exist already are kept as they are."""
        if not inputs:
            return
        async with self._pool.acquire() as connection:
            await connection.execute(
                "INSERT INTO omotes_inputs (job_id, esdl, job_reference)"
                " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])"
                " ON CONFLICT (job_id) DO NOTHING",
                [row.job_id for row in inputs],
                [row.esdl for row in inputs],
                [row.job_reference for row in inputs],
            )

    async def get(self, job_id: UUID) -> OmotesInput | None:
        """The inputs of ``job_id``, or None."""
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT job_id, esdl, job_reference FROM omotes_inputs WHERE job_id = $1", job_id
            )
        return (
            None if row is None else OmotesInput(row["job_id"], row["esdl"], row["job_reference"])
        )

    async def delete(self, job_ids: Sequence[UUID]) -> int:
        """Delete the rows of ``job_ids``; returns how many there were."""
        async with self._pool.acquire() as connection:
            status = await connection.execute(
                "DELETE FROM omotes_inputs WHERE job_id = ANY($1::uuid[])", list(job_ids)
            )
        return rows_affected(status)

    async def purge_orphans(self, created_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` rows stored before ``created_before`` whose job does
        not exist (refused, or deleted by retention). Returns how many were deleted:
        call again while it is ``limit``."""
        async with self._pool.acquire() as connection:
            status = await connection.execute(
                "DELETE FROM omotes_inputs WHERE job_id IN (SELECT i.job_id FROM omotes_inputs i"
                " WHERE i.created_at < $1"
                " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = i.job_id)"
                " LIMIT $2 FOR UPDATE SKIP LOCKED)",
                created_before,
                limit,
            )
        return rows_affected(status)


class OmotesOutputs:
    """``omotes_outputs`` on an asyncpg pool (shared with the other OMOTES tables)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save(self, output: OmotesOutput) -> None:
        """Store ``output``; a row that exists already (a redelivered result) is kept as
        it is. Raises :class:`OutputJobGoneError` when the job does not exist."""
        async with self._pool.acquire() as connection:
            try:
                await connection.execute(
                    "INSERT INTO omotes_outputs (job_id, attempt_id, esdl) VALUES ($1, $2, $3)"
                    " ON CONFLICT (job_id, attempt_id) DO NOTHING",
                    output.job_id,
                    output.attempt_id,
                    output.esdl,
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise OutputJobGoneError(f"job {output.job_id} does not exist") from exc

    async def get(self, job_id: UUID, attempt_id: UUID) -> bytes | None:
        """The output ESDL of ``attempt_id`` of ``job_id``, or None."""
        async with self._pool.acquire() as connection:
            esdl: bytes | None = await connection.fetchval(
                "SELECT esdl FROM omotes_outputs WHERE job_id = $1 AND attempt_id = $2",
                job_id,
                attempt_id,
            )
        return esdl

    async def delete(self, job_ids: Sequence[UUID]) -> int:
        """Delete every output ESDL of ``job_ids``; returns how many there were."""
        async with self._pool.acquire() as connection:
            status = await connection.execute(
                "DELETE FROM omotes_outputs WHERE job_id = ANY($1::uuid[])", list(job_ids)
            )
        return rows_affected(status)
