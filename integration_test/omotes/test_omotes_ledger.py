"""The Celery bridge's ledger (``omotes_tasks``) against a real PostgreSQL: records
outlive the bridge, START counts commit only with their report, and records of
attempts that ended are pruned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from segue.omotes.ledger import TaskLedger
from segue.protocol.messages import StepTask
from segue.store.urls import asyncpg_dsn

LATER = datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    opened = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=0, max_size=2)
    try:
        yield opened
    finally:
        await opened.close()


def step_task(job_id: UUID | None = None) -> StepTask:
    return StepTask(
        job_id=job_id or uuid4(),
        workflow="simulator",
        step="simulator",
        queue="simulator",
        attempt=1,
        attempt_id=uuid4(),
        token="secret-token",
        heartbeat_s=60.0,
    )


async def store_attempt(pool: asyncpg.Pool, task: StepTask, status: str) -> None:
    """A job with one attempt of ``task`` in ``status``, as the orchestrator stores them."""
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO workflow_definitions (content_hash, name, version, definition)"
            " VALUES ('h', 'simulator', '1', '{}'::jsonb) ON CONFLICT DO NOTHING"
        )
        await connection.execute(
            "INSERT INTO jobs (job_id, workflow_name, workflow_version, workflow_hash, status,"
            " priority, params, outputs, crashes, created_at, updated_at) VALUES"
            " ($1, 'simulator', '1', 'h', 'running', 5, '{}', '{}', '{}', now(), now())",
            task.job_id,
        )
        await connection.execute(
            "INSERT INTO step_attempts (attempt_id, job_id, ordinal, step, number, status,"
            " created_at) VALUES ($1, $2, 1, 'simulator', 1, $3, now())",
            task.attempt_id,
            task.job_id,
            status,
        )


async def test_a_record_is_kept_once_and_says_whether_its_task_was_published(
    pool: asyncpg.Pool,
) -> None:
    ledger = TaskLedger(pool)
    task = step_task()

    assert not await ledger.record(task)
    assert not await ledger.record(task)  # published not yet: publish (again)
    await ledger.mark_published(task.attempt_id)
    assert await ledger.record(task)

    record = await TaskLedger(pool).get(task.attempt_id)  # another bridge, same rows
    assert record is not None
    assert (record.job_id, record.token, record.heartbeat_s, record.starts) == (
        task.job_id,
        "secret-token",
        60.0,
        0,
    )


async def fail_to_report(ledger: TaskLedger, task: StepTask) -> None:
    """Count a START whose report then fails."""
    async with ledger.start(task.attempt_id, task.job_id) as record:
        assert record is not None
        raise ConnectionError("the report was not confirmed")


async def test_a_start_counts_only_if_its_block_succeeds_and_only_for_its_job(
    pool: asyncpg.Pool,
) -> None:
    ledger = TaskLedger(pool)
    task = step_task()
    await ledger.record(task)

    async with ledger.start(task.attempt_id, task.job_id) as first:
        assert first is not None
        assert first.starts == 1
    with pytest.raises(ConnectionError):
        await fail_to_report(ledger, task)
    async with ledger.start(task.attempt_id, uuid4()) as foreign:
        assert foreign is None

    assert [r.starts for r in await ledger.running()] == [1]


async def test_records_of_attempts_that_ended_or_are_gone_are_pruned(pool: asyncpg.Pool) -> None:
    ledger = TaskLedger(pool)
    running, ended, gone = step_task(), step_task(), step_task()
    await store_attempt(pool, running, "running")
    await store_attempt(pool, ended, "cancelled")
    for task in (running, ended, gone):
        await ledger.record(task)

    assert await ledger.attempt_live(running.attempt_id)
    assert not await ledger.attempt_live(ended.attempt_id)
    assert await ledger.prune(datetime.now(UTC) - timedelta(hours=1)) == []  # too young
    pruned = await ledger.prune(LATER)

    assert {r.attempt_id for r in pruned} == {ended.attempt_id, gone.attempt_id}
    assert await ledger.get(running.attempt_id) is not None
    forgotten = await ledger.forget(running.attempt_id)
    assert forgotten is not None
    assert await ledger.forget(running.attempt_id) is None
