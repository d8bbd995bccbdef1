"""Store operations behind the hardening guarantees, on a real PostgreSQL database:
job ids locked before their job exists, pending cancels, the new job columns,
and quarantined outbox rows."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from test_store_repository import NOW, insert, make_attempt, make_job, message

from segue.protocol.envelope import Outgoing
from segue.store.repository import PendingCancel, Store


async def test_locking_an_absent_job_makes_the_next_transaction_wait_and_see_its_commit(
    store: Store,
) -> None:
    job_id = uuid4()
    holding, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            assert await tx.lock_jobs([job_id], absent_too=True) == {}
            await tx.add_pending_cancels([PendingCancel(job_id, "early", "alice")])
            holding.set()
            await release.wait()

    async def second() -> dict[UUID, PendingCancel]:
        await holding.wait()
        async with store.transaction() as tx:
            await tx.lock_jobs([job_id], absent_too=True)
            return await tx.take_pending_cancels([job_id])

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    await holding.wait()
    await asyncio.sleep(0.3)
    assert not second_task.done(), "the second transaction must wait for the first"
    release.set()
    await first_task
    taken = await asyncio.wait_for(second_task, 10)

    assert taken == {job_id: PendingCancel(job_id, "early", "alice", False)}
    async with store.transaction() as tx:
        assert await tx.take_pending_cancels([job_id]) == {}  # taken once


async def test_a_pending_cancel_is_kept_once_per_job(store: Store) -> None:
    job_id = uuid4()
    async with store.transaction() as tx:
        await tx.add_pending_cancels([PendingCancel(job_id, "first", None, True)])
    async with store.transaction() as tx:
        await tx.add_pending_cancels([PendingCancel(job_id, "second", "bob")])
    async with store.transaction() as tx:
        assert await tx.take_pending_cancels([job_id]) == {
            job_id: PendingCancel(job_id, "first", None, True)
        }


async def test_secret_owner_update_seq_and_progress_records_are_stored(store: Store) -> None:
    job = make_job(secret="s" * 32, owner="alice", update_seq=7)
    job = dataclasses.replace(
        job, attempts=(make_attempt(job.job_id, 1, progress=0.5, progress_reports=42),)
    )
    await insert(store, job)

    async with store.transaction() as tx:
        locked = (await tx.lock_jobs([job.job_id]))[job.job_id]
    view = await store.job_view(job.job_id)

    assert (locked.job.secret, locked.job.owner, locked.job.update_seq) == ("s" * 32, "alice", 7)
    assert locked.job.attempts[0].progress_reports == 42
    assert view is not None
    assert view.owner == "alice"
    assert "secret" not in view.model_dump()


async def test_a_quarantined_outbox_row_is_not_claimed_until_released(store: Store) -> None:
    task = Outgoing(
        exchange="segue.tasks", routing_key="gone", body=b"{}", message_id="t-1", mandatory=True
    )
    await insert(store, make_job(), outbox=[task, message("fine")])
    async with store.claim_outbox() as claim:
        rows = {row.message.routing_key: row for row in claim.rows}
    assert rows["gone"].message.mandatory
    assert not rows["fine"].message.mandatory

    await store.quarantine_outbox(rows["gone"].id, 8, "returned unroutable")

    async with store.claim_outbox() as claim:
        assert [row.message.routing_key for row in claim.rows] == ["fine"]
    (quarantined,) = await store.quarantined_outbox()
    assert (quarantined.id, quarantined.failures, quarantined.last_error) == (
        rows["gone"].id,
        8,
        "returned unroutable",
    )
    assert quarantined.quarantined_at > NOW

    assert await store.release_outbox() == 1
    async with store.claim_outbox() as claim:
        assert sorted(row.message.routing_key for row in claim.rows) == ["fine", "gone"]
    assert await store.quarantined_outbox() == []


async def _fall_silent(sql_engine: AsyncEngine, replica: str) -> None:
    """``replica`` was last heard of a minute ago (and saw any drain then)."""
    async with sql_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE replica_horizons SET updated_at = now() - interval '1 minute',"
                " drained_at = drained_at - interval '1 minute' WHERE replica_id = :replica"
            ),
            {"replica": replica},
        )


async def _shared(store: Store, horizon: datetime, floor: datetime | None = None) -> datetime:
    async with store.transaction() as tx:
        return await tx.shared_horizon(horizon, floor)


async def test_the_earliest_horizon_of_the_replicas_heard_from_counts(store: Store) -> None:
    now = datetime.now(UTC)
    await store.publish_horizon("replica-a", now - timedelta(seconds=30))
    await store.publish_horizon("replica-b", now - timedelta(seconds=5))
    assert await _shared(store, now) == now - timedelta(seconds=30)
    assert await _shared(store, now - timedelta(hours=1)) == now - timedelta(hours=1)
    # never before the floor (the longest a backlog may hold deadlines back)
    assert await _shared(store, now, floor=now - timedelta(seconds=10)) == now - timedelta(
        seconds=10
    )

    await store.withdraw_horizon("replica-a")
    await store.withdraw_horizon("replica-b")
    assert await _shared(store, now) == now


async def test_a_silent_replica_binds_until_the_events_queue_is_seen_drained_without_it(
    store: Store, sql_engine: AsyncEngine
) -> None:
    """A replica frozen or killed may hold events, or have had them given back to
    the queue behind newer ones: its last horizon keeps binding after it falls
    silent, until a replica sees nothing ready and no consumer but the replicas
    heard from, and every other replica has spoken since."""
    now = datetime.now(UTC)
    silent = now - timedelta(seconds=30)
    await store.publish_horizon("replica-a", silent, ready=0, consumers=3)
    await _fall_silent(sql_engine, "replica-a")
    await store.publish_horizon("replica-b", now, ready=4, consumers=3)
    await store.publish_horizon("replica-c", now, ready=0, consumers=3)
    assert await _shared(store, now) == silent, "silent, but not released: it binds"

    # b and c are heard from: 3 consumers means a's (frozen) consumer is still there
    await store.publish_horizon("replica-b", now, ready=0, consumers=3)
    assert await _shared(store, now) == silent, "a consumer beyond the replicas heard from"

    # a's consumer is gone and nothing is ready, but c has not spoken since
    await store.publish_horizon("replica-b", now, ready=0, consumers=2)
    assert await _shared(store, now) == silent, "c may hold what a gave back"

    await store.publish_horizon("replica-c", now, ready=7, consumers=2)
    assert await _shared(store, now) == now, "drained, and every other replica spoke since"


async def test_a_replica_silent_while_the_queue_was_drained_before_it_fell_silent_binds(
    store: Store, sql_engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    silent = now - timedelta(seconds=30)
    await store.publish_horizon("replica-b", now, ready=0, consumers=1)  # drained, long ago
    await _fall_silent(sql_engine, "replica-b")
    await store.publish_horizon("replica-a", silent)
    await _fall_silent(sql_engine, "replica-a")
    await store.publish_horizon("replica-b", now, ready=None, consumers=None)  # not known
    assert await _shared(store, now) == silent
