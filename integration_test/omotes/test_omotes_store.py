"""The stored output ESDLs (``omotes_outputs``) against a real PostgreSQL: kept byte for
byte and once, refused for a job that is gone, deleted on request and by retention
together with their job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from segue.omotes.store import (
    OmotesInput,
    OmotesInputs,
    OmotesOutput,
    OmotesOutputs,
    OutputJobGoneError,
    check_tables,
)
from segue.service.retention import Retention
from segue.store.repository import Store
from segue.store.urls import asyncpg_dsn

from .test_omotes_ledger import step_task, store_attempt

LARGE = ("<esdl name='Zürich ∆'>" + "<asset/>" * 400_000 + "</esdl>").encode()
"""About 3 MB of UTF-8."""


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    opened = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=0, max_size=2)
    try:
        yield opened
    finally:
        await opened.close()


async def test_an_output_esdl_is_kept_byte_for_byte_and_once(pool: asyncpg.Pool) -> None:
    task = step_task()
    await store_attempt(pool, task, "running")
    outputs = OmotesOutputs(pool)

    await check_tables(pool)
    await outputs.save(OmotesOutput(task.job_id, task.attempt_id, LARGE))
    await outputs.save(OmotesOutput(task.job_id, task.attempt_id, b"<redelivered/>"))

    assert await outputs.get(task.job_id, task.attempt_id) == LARGE
    assert await outputs.get(task.job_id, uuid4()) is None


async def test_an_output_esdl_of_a_job_that_is_gone_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(OutputJobGoneError):
        await OmotesOutputs(pool).save(OmotesOutput(uuid4(), uuid4(), b"<late/>"))


async def test_a_deleted_jobs_input_and_output_esdls_are_deleted(pool: asyncpg.Pool) -> None:
    deleted, kept = step_task(), step_task()
    inputs, outputs = OmotesInputs(pool), OmotesOutputs(pool)
    for task in (deleted, kept):
        await store_attempt(pool, task, "running")
        await inputs.save([OmotesInput(task.job_id, "<in/>", None)])
        await outputs.save(OmotesOutput(task.job_id, task.attempt_id, b"<out/>"))

    counts = await inputs.delete([deleted.job_id]), await outputs.delete([deleted.job_id])

    assert counts == (1, 1)
    assert await inputs.get(deleted.job_id) is None
    assert await outputs.get(deleted.job_id, deleted.attempt_id) is None
    assert await outputs.get(kept.job_id, kept.attempt_id) == b"<out/>"


async def test_retention_prunes_output_esdls_with_their_job(
    pool: asyncpg.Pool, store: Store
) -> None:
    finished, running = step_task(), step_task()
    outputs = OmotesOutputs(pool)
    for task, status in ((finished, "succeeded"), (running, "running")):
        await store_attempt(pool, task, "succeeded")
        await outputs.save(OmotesOutput(task.job_id, task.attempt_id, LARGE))
        async with pool.acquire() as connection:
            await connection.execute(
                "UPDATE jobs SET status = $2, updated_at = now() - interval '2 days'"
                " WHERE job_id = $1",
                task.job_id,
                status,
            )
    retention = Retention(store, keep=timedelta(days=1), clock=lambda: datetime.now(UTC))

    assert await retention.prune() == (1, 0)
    assert await outputs.get(finished.job_id, finished.attempt_id) is None
    assert await outputs.get(running.job_id, running.attempt_id) == LARGE
