"""The ``omotes_tasks`` table: the Celery tasks the bridge dispatched, until they end.

The bridge acknowledges a Segue task once its Celery task is published, so
what it needs to report the worker's events later (the job, the attempt's
token, the heartbeat limit) and how often the task started must outlive the
Segue task, and the bridge itself: they are kept here, not in memory. Every
replica of the bridge sees the same rows, so a START counted by one is
counted for all.

A row is written before its Celery task is published (no event of the task
can come before it), marked published once the broker confirmed, and deleted
when the task's result was reported or its attempt was stopped. Rows of
attempts that ended otherwise (a stop lost while no bridge ran) are pruned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from segue.omotes.worker_translate import TaskRecord
from segue.protocol.messages import AttemptStatus, StepTask

_COLUMNS = "attempt_id, job_id, task_type, token, heartbeat_s, starts"
LIVE_ATTEMPT = [AttemptStatus.DISPATCHED.value, AttemptStatus.RUNNING.value]
"""Statuses of a Segue attempt that a worker may still run."""


class TaskLedger:
    """``omotes_tasks`` on an asyncpg pool (shared with the bridge's other tables)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, task: StepTask) -> bool:
        """Keep ``task``'s record (once); True if its Celery task was published already
        (the Segue task is a redelivery: publishing again would run it twice)."""
        async with self._pool.acquire() as connection:
            published_at = await connection.fetchval(
                "INSERT INTO omotes_tasks (attempt_id, job_id, task_type, token, heartbeat_s)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (attempt_id) DO UPDATE SET task_type = omotes_tasks.task_type"
                " RETURNING published_at",
                task.attempt_id,
                task.job_id,
                task.queue,
                task.token,
                task.heartbeat_s,
            )
        return published_at is not None

    async def mark_published(self, attempt_id: UUID) -> None:
        """The broker confirmed the Celery task of ``attempt_id``."""
        async with self._pool.acquire() as connection:
            await connection.execute(
                "UPDATE omotes_tasks SET published_at = now() WHERE attempt_id = $1", attempt_id
            )

    @asynccontextmanager
    async def start(self, attempt_id: UUID, job_id: UUID) -> AsyncIterator[TaskRecord | None]:
        """Count a START of ``attempt_id``'s task (of job ``job_id``); yields the record
        with the new count (None: no such task). The count is committed only if the
        block succeeds, so a START whose report failed (and comes again) is not
        counted twice."""
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "UPDATE omotes_tasks SET starts = starts + 1, started_at = now()"
                f" WHERE attempt_id = $1 AND job_id = $2 RETURNING {_COLUMNS}",
                attempt_id,
                job_id,
            )
            yield None if row is None else _record(row)

    async def get(self, attempt_id: UUID) -> TaskRecord | None:
        """The record of ``attempt_id``'s task, or None."""
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM omotes_tasks WHERE attempt_id = $1", attempt_id
            )
        return None if row is None else _record(row)

    async def forget(self, attempt_id: UUID) -> TaskRecord | None:
        """Delete the record of ``attempt_id``'s task; returns it (None: there was none)."""
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(
                f"DELETE FROM omotes_tasks WHERE attempt_id = $1 RETURNING {_COLUMNS}", attempt_id
            )
        return None if row is None else _record(row)

    async def running(self) -> list[TaskRecord]:
        """The tasks that started (and have not ended)."""
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM omotes_tasks WHERE starts > 0 ORDER BY attempt_id"
            )
        return [_record(row) for row in rows]

    async def attempt_live(self, attempt_id: UUID) -> bool:
        """Whether Segue's attempt ``attempt_id`` may still run (dispatched or running)."""
        async with self._pool.acquire() as connection:
            return bool(
                await connection.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM step_attempts"
                    " WHERE attempt_id = $1 AND status = ANY($2::text[]))",
                    attempt_id,
                    LIVE_ATTEMPT,
                )
            )

    async def prune(self, recorded_before: datetime, limit: int = 500) -> list[TaskRecord]:
        """Delete up to ``limit`` records kept since before ``recorded_before`` whose
        attempt is over (or gone with its job); returns them."""
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(
                "DELETE FROM omotes_tasks WHERE attempt_id IN (SELECT t.attempt_id"
                " FROM omotes_tasks t WHERE t.created_at < $1 AND NOT EXISTS"
                " (SELECT 1 FROM step_attempts a WHERE a.attempt_id = t.attempt_id"
                " AND a.status = ANY($2::text[])) LIMIT $3 FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_COLUMNS}",
                recorded_before,
                LIVE_ATTEMPT,
                limit,
            )
        return [_record(row) for row in rows]


def _record(row: Any) -> TaskRecord:
    return TaskRecord(
        attempt_id=row["attempt_id"],
        job_id=row["job_id"],
        task_type=row["task_type"],
        token=row["token"],
        heartbeat_s=row["heartbeat_s"],
        starts=row["starts"],
    )
