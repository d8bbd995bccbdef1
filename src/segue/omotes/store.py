"""The ``omotes_inputs`` table: what an OMOTES submission carries besides its parameters.

One row per OMOTES job (``job_id`` = the OMOTES uuid): the input ESDL and the
whole job reference (``None`` when the client gave none, which OMOTES workers
tell apart from ``""`` when they name the output ESDL). The gateway writes the
row before it submits the job; the Celery bridge reads it when it dispatches
the job's task. Rows are written once (a redelivered submission changes
nothing) and deleted some time after their job is gone (:meth:`purge_orphans`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from segue.errors import ConfigurationError
from segue.store.urls import asyncpg_dsn


@dataclass(frozen=True, slots=True)
class OmotesInput:
    """The stored inputs of one OMOTES job."""

    job_id: UUID
    esdl: str
    job_reference: str | None


class OmotesInputs:
    """``omotes_inputs`` on an asyncpg pool of its own (a few connections)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, database_url: str, pool_size: int = 2) -> OmotesInputs:
        """A pool on ``database_url`` (any PostgreSQL URL), opened lazily."""
        pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=0, max_size=pool_size)
        return cls(pool)

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()

    async def check(self) -> None:
        """Raise :class:`ConfigurationError` unless the table exists (migration 0004):
        without it every submission would fail, so the service must not start."""
        async with self._pool.acquire() as connection:
            found = await connection.fetchval("SELECT to_regclass('omotes_inputs') IS NOT NULL")
        if not found:
            raise ConfigurationError(
                "the database has no table omotes_inputs (SEGUE_OMOTES_ENABLED needs it): "
                "run `segue db upgrade`"
            )

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
        return int(status.split()[-1])
