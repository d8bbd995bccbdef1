"""Retention against a real PostgreSQL database: finished jobs past the age go, with
their attempts and history, in batches no larger than asked; recent and live jobs
stay; so do recent cancels of jobs not submitted yet.

Rows are written with plain SQL, so these tests depend on the schema only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.protocol.messages import JobStatus
from segue.service.retention import Retention
from segue.store.repository import Store

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
KEEP = timedelta(days=30)
OLD = NOW - KEEP - timedelta(hours=1)
RECENT = NOW - KEEP + timedelta(hours=1)


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)


async def ids(engine: AsyncEngine, sql: str) -> set[UUID]:
    async with engine.connect() as connection:
        return {row[0] for row in await connection.execute(text(sql))}


async def count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text(sql)) or 0)


async def stored_job(engine: AsyncEngine, status: JobStatus, updated_at: datetime) -> UUID:
    """A job of ``status`` last updated at ``updated_at``, with an attempt and a history entry."""
    job_id = uuid4()
    finished = updated_at if status.is_terminal else None
    await execute(
        engine,
        "INSERT INTO workflow_definitions (content_hash, name, version, definition)"
        " VALUES ('sha256:w', 'w', '1', '{}') ON CONFLICT DO NOTHING",
    )
    await execute(
        engine,
        "INSERT INTO jobs (job_id, workflow_name, workflow_version, workflow_hash, status,"
        " priority, params, outputs, crashes, created_at, updated_at, finished_at)"
        " VALUES (:job_id, 'w', '1', 'sha256:w', :status, 5, '{}', '{}', '{}',"
        " :created_at, :updated_at, :finished_at)",
        job_id=job_id,
        status=status.value,
        created_at=updated_at - timedelta(minutes=5),
        updated_at=updated_at,
        finished_at=finished,
    )
    await execute(
        engine,
        "INSERT INTO step_attempts (attempt_id, job_id, ordinal, step, number, status, created_at)"
        " VALUES (:attempt_id, :job_id, 1, 'a', 1, 'scheduled', :at)",
        attempt_id=uuid4(),
        job_id=job_id,
        at=updated_at,
    )
    await execute(
        engine,
        "INSERT INTO job_events (job_id, seq, type, data, at)"
        " VALUES (:job_id, 1, 'job_submitted', '{}', :at)",
        job_id=job_id,
        at=updated_at,
    )
    return job_id


async def pending_cancel(engine: AsyncEngine, created_at: datetime) -> UUID:
    """A cancel of a job never submitted, kept since ``created_at``."""
    job_id = uuid4()
    await execute(
        engine,
        "INSERT INTO pending_cancels (job_id, reason, created_at)"
        " VALUES (:job_id, 'cancelled early', :created_at)",
        job_id=job_id,
        created_at=created_at,
    )
    return job_id


class Tally:
    def __init__(self) -> None:
        self.amounts: list[float] = []

    def __call__(self, amount: float) -> None:
        self.amounts.append(amount)


async def test_old_finished_jobs_go_in_bounded_batches_and_the_rest_stays(
    store: Store, sql_engine: AsyncEngine
) -> None:
    terminal = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT]
    for status in [*terminal, JobStatus.SUCCEEDED]:
        await stored_job(sql_engine, status, OLD)
    kept = {
        await stored_job(sql_engine, JobStatus.SUCCEEDED, RECENT),
        await stored_job(sql_engine, JobStatus.RUNNING, OLD),
        await stored_job(sql_engine, JobStatus.QUEUED, OLD),
    }
    await pending_cancel(sql_engine, OLD)
    recent_cancel = await pending_cancel(sql_engine, RECENT)
    jobs, cancels = Tally(), Tally()
    retention = Retention(
        store, KEEP, lambda: NOW, count_jobs=jobs, count_cancels=cancels, batch=2, pause_s=0
    )

    assert await retention.prune() == (5, 1)

    assert jobs.amounts == [2, 2, 1], "no statement deletes more than a batch"
    assert cancels.amounts == [1]
    assert await ids(sql_engine, "SELECT job_id FROM jobs") == kept
    assert await ids(sql_engine, "SELECT DISTINCT job_id FROM step_attempts") == kept
    assert await ids(sql_engine, "SELECT DISTINCT job_id FROM job_events") == kept
    assert await ids(sql_engine, "SELECT job_id FROM pending_cancels") == {recent_cancel}


async def test_a_second_pass_finds_nothing_more(store: Store, sql_engine: AsyncEngine) -> None:
    await stored_job(sql_engine, JobStatus.FAILED, OLD)
    retention = Retention(store, KEEP, lambda: NOW, batch=500, pause_s=0)

    assert await retention.prune() == (1, 0)
    assert await retention.prune() == (0, 0)
    assert await count(sql_engine, "SELECT count(*) FROM jobs") == 0


async def test_pending_cancels_are_purged_oldest_past_the_cutoff_only(
    store: Store, sql_engine: AsyncEngine
) -> None:
    for minutes in range(3):
        await pending_cancel(sql_engine, OLD - timedelta(minutes=minutes))
    recent = await pending_cancel(sql_engine, RECENT)

    first = await store.purge_pending_cancels(NOW - KEEP, limit=2)
    second = await store.purge_pending_cancels(NOW - KEEP, limit=2)

    assert (first, second) == (2, 1)
    assert await ids(sql_engine, "SELECT job_id FROM pending_cancels") == {recent}


async def test_quarantined_outbox_rows_past_the_age_go_and_the_rest_stays(
    store: Store, sql_engine: AsyncEngine
) -> None:
    for quarantined_at in (OLD, OLD, RECENT, None):
        await execute(
            sql_engine,
            "INSERT INTO outbox (exchange, routing_key, body, message_id, quarantined_at)"
            " VALUES ('x', 'k', '\\x00', 'm', :quarantined_at)",
            quarantined_at=quarantined_at,
        )
    outbox = Tally()
    retention = Retention(store, KEEP, lambda: NOW, count_outbox=outbox, batch=1, pause_s=0)

    await retention.prune()

    assert outbox.amounts == [1, 1], "one batch per row, as asked"
    remaining = await count(sql_engine, "SELECT count(*) FROM outbox")
    assert remaining == 2, "recent quarantined rows and rows waiting to be published stay"
