"""The job repository against a real PostgreSQL database (one fresh database per test)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text

from segue.engine.effects import Record
from segue.engine.state import Attempt, Job, new_attempt_id
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.store.repository import OutboxMessage, Store, StoreError
from segue.workflows.model import Workflow

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
WORKFLOW = Workflow.model_validate({"name": "w", "steps": [{"name": "a", "queue": "a"}]})
WORKFLOW_HASH = "sha256:w-1"


def make_attempt(job_id: UUID, ordinal: int, **changes: Any) -> Attempt:
    """The ``ordinal``-th attempt of step ``a`` of a job, scheduled now."""
    attempt = Attempt(
        attempt_id=new_attempt_id(job_id, ordinal),
        step="a",
        number=ordinal,
        status=AttemptStatus.SCHEDULED,
        created_at=NOW,
    )
    return dataclasses.replace(attempt, **changes)


def make_job(**changes: Any) -> Job:
    """A queued job of workflow ``w`` (fields overridable)."""
    job = Job(
        job_id=uuid4(),
        workflow=WORKFLOW,
        workflow_hash=WORKFLOW_HASH,
        params={"horizon": 10},
        status=JobStatus.QUEUED,
        priority=5,
        reference="ref-1",
        created_at=NOW,
        updated_at=NOW,
    )
    return dataclasses.replace(job, **changes)


def message(key: str = "a") -> OutboxMessage:
    """An outbox message routed by ``key``."""
    return OutboxMessage(
        exchange="segue.tasks",
        routing_key=key,
        body=b'{"type": "step_task"}',
        message_id=str(uuid4()),
        priority=5,
        headers={"job_id": "x"},
    )


async def insert(
    store: Store,
    job: Job,
    records: Sequence[Record] = (Record("job_submitted"),),
    outbox: Sequence[OutboxMessage] = (),
    wake_at: datetime | None = None,
) -> Job:
    """Insert ``job`` in its own transaction; return it."""
    async with store.transaction() as tx:
        assert await tx.insert_job(job, records, outbox, wake_at, at=NOW) is not None
    return job


async def lock(store: Store, job_id: UUID) -> Job | None:
    """The stored job, read under its row lock in a transaction of its own."""
    async with store.transaction() as tx:
        return await tx.lock_job(job_id)


async def scalar(store: Store, sql: str, **params: Any) -> Any:
    """One value from a raw SQL query."""
    async with store.engine.connect() as connection:
        return await connection.scalar(text(sql), params)


# --- jobs ------------------------------------------------------------------------------


async def test_inserted_job_reads_back_equal(store: Store) -> None:
    job_id = uuid4()
    job = make_job(
        job_id=job_id,
        status=JobStatus.RUNNING,
        current_step="a",
        deadline_at=LATER,
        outputs={"a": {"rows": [1, 2]}},
        crashes={"a": 1},
        error=ErrorInfo(kind="lost", message="worker died", step="a"),
        attempts=(
            make_attempt(job_id, 1, status=AttemptStatus.LOST, finished_at=NOW),
            make_attempt(
                job_id,
                2,
                status=AttemptStatus.RUNNING,
                worker_id="w-1",
                progress=0.25,
                progress_message="a quarter",
                last_seen_at=NOW,
                output={"partial": True},
                error=ErrorInfo(kind="ValueError", message="retrying"),
            ),
        ),
    )
    await insert(store, job)

    assert await lock(store, job.job_id) == job


async def test_unknown_job_locks_as_none(store: Store) -> None:
    assert await lock(store, uuid4()) is None


async def test_inserting_a_job_twice_keeps_the_first(store: Store) -> None:
    job = await insert(store, make_job(), outbox=[message()])

    async with store.transaction() as tx:
        again = dataclasses.replace(job, priority=9)
        inserted = await tx.insert_job(again, [Record("job_submitted")], [message()], NOW)

    assert inserted is None
    assert await lock(store, job.job_id) == job
    view = await store.job_view(job.job_id)
    assert view is not None
    assert len(view.history) == 1
    assert await store.outbox_size() == 1
    assert await scalar(store, "SELECT wake_at FROM jobs") is None


async def test_racing_inserts_of_one_job_store_it_once(store: Store) -> None:
    job = make_job()

    async def insert_in_other_transaction() -> list[int] | None:
        async with store.transaction() as tx:
            return await tx.insert_job(job, [Record("job_submitted")], [message()], NOW)

    async with store.transaction() as first:
        assert await first.insert_job(job, [Record("job_submitted")], [message()], NOW)
        second = asyncio.create_task(insert_in_other_transaction())
        await asyncio.sleep(0.3)
        assert not second.done(), "the second insert waits for the first to commit"

    assert await asyncio.wait_for(second, timeout=10) is None
    assert await store.outbox_size() == 1


async def test_every_status_value_can_be_stored(store: Store) -> None:
    for status in JobStatus:
        job = make_job()
        attempts = tuple(
            make_attempt(job.job_id, n, status=s) for n, s in enumerate(AttemptStatus, 1)
        )
        await insert(store, dataclasses.replace(job, status=status, attempts=attempts))

    assert {view.status for view in await store.list_jobs()} == set(JobStatus)


async def test_save_job_continues_history_and_writes_changed_attempts(store: Store) -> None:
    job = make_job()
    first = make_attempt(job.job_id, 1)
    job = await insert(
        store,
        dataclasses.replace(job, attempts=(first,)),
        records=[Record("job_submitted"), Record("step_scheduled", {"step": "a"})],
        outbox=[message()],
    )

    async with store.transaction() as tx:
        before = await tx.lock_job(job.job_id)
        assert before is not None
        after = dataclasses.replace(
            before,
            status=JobStatus.RUNNING,
            current_step="a",
            updated_at=LATER,
            attempts=(
                dataclasses.replace(first, status=AttemptStatus.FAILED, finished_at=LATER),
                make_attempt(job.job_id, 2, due_at=LATER),
            ),
        )
        records = [Record("step_failed"), Record("step_scheduled"), Record("step_dispatched")]
        ids = await tx.save_job(before, after, records, [message(), message()], LATER)

    assert len(ids) == 2
    async with store.claim_outbox(ids) as batch:
        assert [m.id for m in batch] == ids
    assert await lock(store, job.job_id) == after
    view = await store.job_view(job.job_id)
    assert view is not None
    assert [(e.seq, e.type) for e in view.history] == [
        (1, "job_submitted"),
        (2, "step_scheduled"),
        (3, "step_failed"),
        (4, "step_scheduled"),
        (5, "step_dispatched"),
    ]
    assert await store.outbox_size() == 3
    assert await scalar(store, "SELECT last_seq FROM jobs") == 5
    assert await scalar(store, "SELECT wake_at FROM jobs") == LATER


async def test_save_job_leaves_unchanged_attempts_alone(store: Store) -> None:
    job = make_job()
    job = await insert(
        store, dataclasses.replace(job, attempts=(make_attempt(job.job_id, 1, finished_at=NOW),))
    )
    version_sql = "SELECT xmin::text FROM step_attempts WHERE ordinal = 1"
    written = await scalar(store, version_sql)

    async with store.transaction() as tx:
        before = await tx.lock_job(job.job_id)
        assert before is not None
        after = dataclasses.replace(
            before, attempts=(*before.attempts, make_attempt(job.job_id, 2)), updated_at=LATER
        )
        await tx.save_job(before, after, [Record("step_scheduled")], [], None)

    assert await scalar(store, version_sql) == written
    assert await scalar(store, "SELECT count(*) FROM step_attempts") == 2


async def test_save_job_without_a_state_change_still_records_history(store: Store) -> None:
    job = await insert(store, make_job(), wake_at=NOW)

    async with store.transaction() as tx:
        before = await tx.lock_job(job.job_id)
        assert before is not None
        await tx.save_job(before, before, [Record("event_ignored", {"why": "stale"})], [], LATER)

    view = await store.job_view(job.job_id)
    assert view is not None
    assert [(e.seq, e.type, e.data) for e in view.history] == [
        (1, "job_submitted", {}),
        (2, "event_ignored", {"why": "stale"}),
    ]
    assert await lock(store, job.job_id) == job
    assert await scalar(store, "SELECT wake_at FROM jobs") == LATER


async def test_save_job_of_a_job_never_inserted_fails(store: Store) -> None:
    job = make_job()

    with pytest.raises(StoreError, match="is not stored"):
        async with store.transaction() as tx:
            await tx.save_job(job, dataclasses.replace(job, updated_at=LATER), [], [], None)


async def test_a_failed_transaction_writes_nothing(store: Store) -> None:
    job = make_job()

    async def crash_after_insert() -> None:
        async with store.transaction() as tx:
            await tx.insert_job(job, [Record("job_submitted")], [message()], NOW)
            raise RuntimeError("handler crashed")

    with pytest.raises(RuntimeError):
        await crash_after_insert()

    assert await lock(store, job.job_id) is None
    assert await store.outbox_size() == 0


async def test_a_locked_job_waits_for_the_holder_to_commit(store: Store) -> None:
    job = await insert(store, make_job())

    async def lock_in_other_transaction() -> Job | None:
        return await lock(store, job.job_id)

    async with store.transaction() as holder:
        before = await holder.lock_job(job.job_id)
        assert before is not None
        waiter = asyncio.create_task(lock_in_other_transaction())
        await asyncio.sleep(0.3)
        assert not waiter.done()
        after = dataclasses.replace(before, status=JobStatus.RUNNING, updated_at=LATER)
        await holder.save_job(before, after, [Record("job_started")], [], None)

    assert await asyncio.wait_for(waiter, timeout=10) == after


# --- timers ----------------------------------------------------------------------------


async def test_due_jobs_are_the_jobs_whose_time_has_come_earliest_first(store: Store) -> None:
    late = await insert(store, make_job(), wake_at=NOW - timedelta(seconds=1))
    early = await insert(store, make_job(), wake_at=NOW - timedelta(minutes=1))
    await insert(store, make_job(), wake_at=NOW + timedelta(seconds=1))
    await insert(store, make_job(), wake_at=None)

    async with store.transaction() as tx:
        due = await tx.due_jobs(NOW, limit=10)

    assert due == [early, late]


async def test_concurrent_sweepers_get_disjoint_jobs(store: Store) -> None:
    for _ in range(5):
        await insert(store, make_job(), wake_at=NOW)

    async with store.transaction() as first:
        taken_first = await first.due_jobs(NOW, limit=2)
        async with store.transaction() as second:
            taken_second = await second.due_jobs(NOW, limit=10)

    first_ids = {job.job_id for job in taken_first}
    second_ids = {job.job_id for job in taken_second}
    assert len(first_ids) == 2
    assert len(second_ids) == 3
    assert not first_ids & second_ids


# --- outbox ----------------------------------------------------------------------------


async def outbox_ids(store: Store, count: int) -> list[int]:
    """Write ``count`` outbox messages with a new job; return their ids."""
    async with store.transaction() as tx:
        ids = await tx.insert_job(make_job(), [], [message(str(n)) for n in range(count)], None)
    assert ids is not None
    return ids


async def test_claimed_messages_read_back_as_written(store: Store) -> None:
    sent = message()
    async with store.transaction() as tx:
        ids = await tx.insert_job(make_job(), [], [sent], None)
    assert ids is not None

    async with store.claim_outbox(ids) as batch:
        claimed = list(batch)

    assert [m.id for m in claimed] == ids
    assert dataclasses.asdict(claimed[0]) == {**dataclasses.asdict(sent), "id": claimed[0].id}


async def test_concurrent_claimers_get_disjoint_messages(store: Store) -> None:
    ids = await outbox_ids(store, 5)

    async with store.claim_outbox(None, limit=2) as first:
        async with store.claim_outbox(None, limit=10) as second:
            second_ids = [m.id for m in second]
            await second.done(second_ids)
        first_ids = [m.id for m in first]
        await first.done(first_ids)

    assert first_ids == ids[:2]
    assert second_ids == ids[2:]
    assert await store.outbox_size() == 0


async def test_messages_are_deleted_only_once_done_and_committed(store: Store) -> None:
    ids = await outbox_ids(store, 3)

    async with store.claim_outbox(ids) as batch:
        assert len(batch) == 3
        await batch.done(ids[:1])
        assert await store.outbox_size() == 3

    assert await store.outbox_size() == 2
    async with store.claim_outbox(ids) as batch:
        assert [m.id for m in batch] == ids[1:]


async def test_messages_survive_a_failed_publish(store: Store) -> None:
    ids = await outbox_ids(store, 2)

    async def publish_failing() -> None:
        async with store.claim_outbox(ids) as batch:
            await batch.done(ids)
            raise ConnectionError("broker went away")

    with pytest.raises(ConnectionError):
        await publish_failing()

    async with store.claim_outbox(ids) as batch:
        pass
    assert [m.id for m in batch] == ids


async def test_claiming_by_age_picks_up_left_behind_messages(store: Store) -> None:
    ids = await outbox_ids(store, 2)
    db_now = await scalar(store, "SELECT now()")

    async with store.claim_outbox(older_than=db_now - timedelta(minutes=1)) as batch:
        assert list(batch) == []
    async with store.claim_outbox(older_than=db_now + timedelta(minutes=1)) as batch:
        assert [m.id for m in batch] == ids


async def test_done_refuses_ids_that_were_not_claimed(store: Store) -> None:
    ids = await outbox_ids(store, 2)

    with pytest.raises(ValueError, match="not in this batch"):
        async with store.claim_outbox(ids[:1]) as batch:
            await batch.done(ids)

    assert await store.outbox_size() == 2


async def test_claiming_no_ids_claims_nothing(store: Store) -> None:
    await outbox_ids(store, 1)

    async with store.claim_outbox([]) as batch:
        assert list(batch) == []
        await batch.done([])


# --- queries ---------------------------------------------------------------------------


async def test_job_view_shows_state_attempts_and_history(store: Store) -> None:
    job = make_job()
    attempt = make_attempt(
        job.job_id, 1, status=AttemptStatus.RUNNING, worker_id="w-1", progress=0.5
    )
    job = dataclasses.replace(job, status=JobStatus.RUNNING, current_step="a", attempts=(attempt,))
    await insert(store, job, records=[Record("job_submitted", {"by": "test"}), Record("x")])

    view = await store.job_view(job.job_id)

    assert view is not None
    assert (view.job_id, view.workflow, view.workflow_version) == (job.job_id, "w", "1")
    assert (view.status, view.current_step, view.params) == (
        JobStatus.RUNNING,
        "a",
        {"horizon": 10},
    )
    assert [(a.attempt_id, a.worker_id, a.progress) for a in view.attempts] == [
        (attempt.attempt_id, "w-1", 0.5)
    ]
    assert [(e.seq, e.type, e.data, e.at) for e in view.history] == [
        (1, "job_submitted", {"by": "test"}, NOW),
        (2, "x", {}, NOW),
    ]


async def test_job_view_without_history(store: Store) -> None:
    job = await insert(store, make_job())

    view = await store.job_view(job.job_id, include_history=False)

    assert view is not None
    assert view.history == []


async def test_job_view_of_unknown_job_is_none(store: Store) -> None:
    assert await store.job_view(uuid4()) is None


async def test_list_jobs_newest_first_by_status(store: Store) -> None:
    older = await insert(store, make_job(updated_at=NOW))
    newer = await insert(store, make_job(updated_at=LATER))
    done = await insert(store, make_job(status=JobStatus.SUCCEEDED, finished_at=NOW))

    everything = await store.list_jobs()
    queued = await store.list_jobs(JobStatus.QUEUED)
    limited = await store.list_jobs(limit=1)

    assert [v.job_id for v in queued] == [newer.job_id, older.job_id]
    assert {v.job_id for v in everything} == {older.job_id, newer.job_id, done.job_id}
    assert [v.job_id for v in limited] == [newer.job_id]


async def test_purge_deletes_old_finished_jobs_with_their_rows(store: Store) -> None:
    old_done = make_job(status=JobStatus.SUCCEEDED, finished_at=NOW)
    old_done = dataclasses.replace(old_done, attempts=(make_attempt(old_done.job_id, 1),))
    await insert(store, old_done)
    old_failed = await insert(store, make_job(status=JobStatus.FAILED, finished_at=NOW))
    recent_done = await insert(store, make_job(status=JobStatus.CANCELLED, updated_at=LATER))
    old_running = await insert(store, make_job(status=JobStatus.RUNNING))

    first = await store.purge_finished_jobs(updated_before=NOW + timedelta(minutes=1), limit=1)
    second = await store.purge_finished_jobs(updated_before=NOW + timedelta(minutes=1), limit=1)
    third = await store.purge_finished_jobs(updated_before=NOW + timedelta(minutes=1), limit=1)

    assert (first, second, third) == (1, 1, 0)
    remaining = {view.job_id for view in await store.list_jobs()}
    assert remaining == {recent_done.job_id, old_running.job_id}
    assert old_failed.job_id not in remaining
    assert await scalar(store, "SELECT count(*) FROM step_attempts") == 0
    assert await scalar(store, "SELECT count(*) FROM job_events") == 2


async def test_ping_answers(store: Store) -> None:
    await store.ping()
