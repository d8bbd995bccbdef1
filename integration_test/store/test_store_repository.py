"""The job repository against a real PostgreSQL database (one fresh database per test)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.engine.effects import Record
from segue.engine.state import Attempt, Job, new_attempt_id
from segue.protocol.envelope import Outgoing
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.store.repository import (
    ConcurrentInsertError,
    JobWrite,
    Locked,
    OutboxRow,
    Store,
    StoreError,
)
from segue.workflows.model import Workflow

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
NAIVE = datetime(2024, 5, 1, 12, 0)  # what the store must refuse
WORKFLOW = Workflow.model_validate({"name": "w", "steps": [{"name": "a", "queue": "a"}]})
WORKFLOW_HASH = "sha256:w-1"
OTHER_WORKFLOW = Workflow.model_validate(
    {"name": "v", "version": "2", "steps": [{"name": "a", "queue": "a"}]}
)
OTHER_HASH = "sha256:v-2"


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


def message(key: str = "a") -> Outgoing:
    """An outgoing message routed by ``key``."""
    return Outgoing(
        exchange="segue.tasks",
        routing_key=key,
        body=b'{"type": "step_task"}',
        message_id=str(uuid4()),
        priority=5,
        headers={"job_id": "x"},
    )


def new(job: Job, records: Sequence[Record] = (), wake_at: datetime | None = None) -> JobWrite:
    """The write that inserts ``job``."""
    return JobWrite(None, job, 0, records, wake_at)


async def insert(
    store: Store,
    job: Job,
    records: Sequence[Record] = (Record("job_submitted"),),
    outbox: Sequence[Outgoing] = (),
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


async def history(store: Store, job_id: UUID) -> list[tuple[int, str]]:
    """``(seq, type)`` of every history entry of the job."""
    view = await store.job_view(job_id)
    assert view is not None
    return [(entry.seq, entry.type) for entry in view.history]


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    """One value from a raw SQL query."""
    async with engine.connect() as connection:
        return await connection.scalar(text(sql), params)


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    """Run a raw SQL statement and commit it (a change behind the store's back)."""
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)


async def claimed(store: Store) -> list[OutboxRow]:
    """Every outbox row, claimed and released without deleting any."""
    async with store.claim_outbox() as claim:
        return claim.rows


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


async def test_lock_jobs_returns_the_stored_ones_with_their_history_length(store: Store) -> None:
    one = await insert(store, make_job(), records=[Record("job_submitted")])
    two = await insert(store, make_job(), records=[Record("job_submitted"), Record("x")])

    async with store.transaction() as tx:
        locked = await tx.lock_jobs([one.job_id, uuid4(), two.job_id, one.job_id])
        nothing = await tx.lock_jobs([])

    assert locked == {one.job_id: Locked(one, 1), two.job_id: Locked(two, 2)}
    assert nothing == {}


async def test_inserting_a_job_twice_keeps_the_first(store: Store, sql_engine: AsyncEngine) -> None:
    job = await insert(store, make_job(), outbox=[message()])

    async with store.transaction() as tx:
        again = dataclasses.replace(job, priority=9)
        inserted = await tx.insert_job(again, [Record("job_submitted")], [message()], NOW)

    assert inserted is None
    assert await lock(store, job.job_id) == job
    assert await history(store, job.job_id) == [(1, "job_submitted")]
    assert await store.outbox_size() == 1
    assert await scalar(sql_engine, "SELECT wake_at FROM jobs") is None


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
    assert await history(store, job.job_id) == [(1, "job_submitted")]


async def test_a_batch_inserting_a_job_stored_meanwhile_fails_and_writes_nothing(
    store: Store,
) -> None:
    existing = await insert(store, make_job())
    taken = make_job()
    fresh = make_job()

    async def write_batch_in_other_transaction() -> None:
        async with store.transaction() as tx:
            before = (await tx.lock_jobs([existing.job_id]))[existing.job_id]
            after = dataclasses.replace(before.job, status=JobStatus.RUNNING, updated_at=LATER)
            writes = [
                new(fresh, [Record("job_submitted")], LATER),
                new(dataclasses.replace(taken, priority=9), [Record("job_submitted")]),
                JobWrite(before.job, after, before.last_seq, [Record("job_started")], LATER),
            ]
            await tx.write(writes, [message("loser")], at=NOW)

    async with store.transaction() as first:
        assert await first.insert_job(taken, [Record("job_submitted")], [message("winner")], None)
        loser = asyncio.create_task(write_batch_in_other_transaction())
        await asyncio.sleep(0.3)
        assert not loser.done(), "the batch waits for the first insert to commit"

    with pytest.raises(ConcurrentInsertError):
        await asyncio.wait_for(loser, timeout=10)
    assert await lock(store, fresh.job_id) is None
    assert await lock(store, taken.job_id) == taken
    assert await lock(store, existing.job_id) == existing
    assert await history(store, existing.job_id) == [(1, "job_submitted")]
    assert [row.message.routing_key for row in await claimed(store)] == ["winner"]


async def test_every_status_value_can_be_stored(store: Store) -> None:
    for status in JobStatus:
        job = make_job()
        attempts = tuple(
            make_attempt(job.job_id, n, status=s) for n, s in enumerate(AttemptStatus, 1)
        )
        await insert(store, dataclasses.replace(job, status=status, attempts=attempts))

    assert {view.status for view in await store.list_jobs()} == set(JobStatus)


async def test_save_job_continues_history_and_writes_changed_attempts(
    store: Store, sql_engine: AsyncEngine
) -> None:
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
        sent = [message("b"), message("c")]
        ids = await tx.save_job(before, after, records, sent, LATER)

    rows = await claimed(store)
    assert [(row.id, row.message) for row in rows[1:]] == list(zip(ids, sent, strict=True))
    assert await lock(store, job.job_id) == after
    assert await history(store, job.job_id) == [
        (1, "job_submitted"),
        (2, "step_scheduled"),
        (3, "step_failed"),
        (4, "step_scheduled"),
        (5, "step_dispatched"),
    ]
    assert await store.outbox_size() == 3
    assert await scalar(sql_engine, "SELECT last_seq FROM jobs") == 5
    assert await scalar(sql_engine, "SELECT wake_at FROM jobs") == LATER


async def test_save_job_leaves_unchanged_attempts_alone(
    store: Store, sql_engine: AsyncEngine
) -> None:
    job = make_job()
    job = await insert(
        store, dataclasses.replace(job, attempts=(make_attempt(job.job_id, 1, finished_at=NOW),))
    )
    version_sql = "SELECT xmin::text FROM step_attempts WHERE ordinal = 1"
    written = await scalar(sql_engine, version_sql)

    async with store.transaction() as tx:
        before = await tx.lock_job(job.job_id)
        assert before is not None
        after = dataclasses.replace(
            before, attempts=(*before.attempts, make_attempt(job.job_id, 2)), updated_at=LATER
        )
        await tx.save_job(before, after, [Record("step_scheduled")], [], None)

    assert await scalar(sql_engine, version_sql) == written
    assert await scalar(sql_engine, "SELECT count(*) FROM step_attempts") == 2


async def test_save_job_without_a_state_change_still_records_history(
    store: Store, sql_engine: AsyncEngine
) -> None:
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
    assert await scalar(sql_engine, "SELECT wake_at FROM jobs") == LATER


async def test_save_job_of_a_job_never_inserted_fails(store: Store) -> None:
    job = make_job()

    with pytest.raises(StoreError, match="is not stored"):
        async with store.transaction() as tx:
            await tx.save_job(job, dataclasses.replace(job, updated_at=LATER), [], [], None)


async def test_write_of_a_job_never_inserted_fails(store: Store) -> None:
    job = make_job()

    with pytest.raises(StoreError, match="not stored"):
        async with store.transaction() as tx:
            await tx.write(
                [JobWrite(job, dataclasses.replace(job, updated_at=LATER), 0, [], None)], []
            )


async def test_save_job_refuses_another_job_or_workflow(store: Store) -> None:
    job = await insert(store, make_job())

    async with store.transaction() as tx:
        before = await tx.lock_job(job.job_id)
        assert before is not None
        for after in (
            dataclasses.replace(before, job_id=uuid4()),
            dataclasses.replace(before, workflow_hash=OTHER_HASH),
        ):
            with pytest.raises(ValueError, match="same job and workflow"):
                await tx.save_job(before, after, [], [], None)


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


async def test_a_waiting_lock_sees_the_attempts_the_holder_committed(store: Store) -> None:
    # A statement sees what was committed when it began: attempts read together
    # with the lock the waiter was granted would predate the holder's commit.
    job = make_job()
    job = await insert(store, dataclasses.replace(job, attempts=(make_attempt(job.job_id, 1),)))

    async def lock_many_in_other_transaction() -> Job | None:
        async with store.transaction() as tx:
            locked = await tx.lock_jobs([job.job_id])
        return locked[job.job_id].job

    async with store.transaction() as holder:
        before = await holder.lock_job(job.job_id)
        assert before is not None
        waiter = asyncio.create_task(lock_many_in_other_transaction())
        await asyncio.sleep(0.3)
        assert not waiter.done()
        done = dataclasses.replace(
            before.attempts[0], status=AttemptStatus.SUCCEEDED, finished_at=LATER
        )
        after = dataclasses.replace(
            before,
            updated_at=LATER,
            attempts=(done, make_attempt(job.job_id, 2, created_at=LATER)),
        )
        await holder.save_job(before, after, [Record("step_succeeded")], [], None)

    seen = await asyncio.wait_for(waiter, timeout=10)
    assert seen is not None
    assert seen.attempts == after.attempts


# --- batched writes --------------------------------------------------------------------


async def test_write_stores_new_and_existing_jobs_with_their_history_and_messages(
    store: Store, sql_engine: AsyncEngine
) -> None:
    one = make_job()
    kept, changed = make_attempt(one.job_id, 1, finished_at=NOW), make_attempt(one.job_id, 2)
    one = await insert(
        store,
        dataclasses.replace(one, attempts=(kept, changed)),
        records=[Record("job_submitted"), Record("step_scheduled")],
    )
    two = await insert(store, make_job(), wake_at=NOW)
    three = make_job(workflow=OTHER_WORKFLOW, workflow_hash=OTHER_HASH)
    three = dataclasses.replace(three, attempts=(make_attempt(three.job_id, 1),))
    kept_version = "SELECT xmin::text FROM step_attempts WHERE attempt_id = :id"
    written = await scalar(sql_engine, kept_version, id=kept.attempt_id)

    async with store.transaction() as tx:
        locked = await tx.lock_jobs([two.job_id, one.job_id])
        before_one, before_two = locked[one.job_id], locked[two.job_id]
        after_one = dataclasses.replace(
            before_one.job,
            status=JobStatus.RUNNING,
            updated_at=LATER,
            attempts=(
                before_one.job.attempts[0],
                dataclasses.replace(changed, status=AttemptStatus.FAILED, finished_at=LATER),
                make_attempt(one.job_id, 3, due_at=LATER),
            ),
        )
        writes = [
            JobWrite(
                before_one.job,
                after_one,
                before_one.last_seq,
                [Record("step_failed"), Record("step_scheduled")],
                LATER,
            ),
            new(three, [Record("job_submitted"), Record("step_scheduled")], NOW),
            JobWrite(
                before_two.job, before_two.job, before_two.last_seq, [Record("ignored")], None
            ),
        ]
        sent = [message(f"m{n}") for n in range(5)]
        ids = await tx.write(writes, sent, at=NOW)

    assert [(row.id, row.message) for row in await claimed(store)] == list(
        zip(ids, sent, strict=True)
    )
    async with store.transaction() as tx:
        stored = await tx.lock_jobs([one.job_id, two.job_id, three.job_id])
    assert stored == {
        one.job_id: Locked(after_one, 4),
        two.job_id: Locked(two, 2),
        three.job_id: Locked(three, 2),
    }
    assert await history(store, one.job_id) == [
        (1, "job_submitted"),
        (2, "step_scheduled"),
        (3, "step_failed"),
        (4, "step_scheduled"),
    ]
    assert await history(store, two.job_id) == [(1, "job_submitted"), (2, "ignored")]
    assert await history(store, three.job_id) == [(1, "job_submitted"), (2, "step_scheduled")]
    assert await scalar(sql_engine, kept_version, id=kept.attempt_id) == written
    async with store.transaction() as tx:
        due = await tx.due_jobs(LATER, limit=10)
    assert [locked.job.job_id for locked in due] == [three.job_id, one.job_id]


async def test_write_of_nothing_writes_nothing(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.write([], []) == []

    assert await store.outbox_size() == 0


async def test_history_defaults_to_the_transaction_time(
    store: Store, sql_engine: AsyncEngine
) -> None:
    job = make_job()

    async with store.transaction() as tx:
        await tx.write([new(job, [Record("job_submitted")])], [])
        written_at = await scalar(sql_engine, "SELECT now()")

    view = await store.job_view(job.job_id)
    assert view is not None
    (entry,) = view.history
    assert written_at - timedelta(minutes=1) < entry.at <= written_at


async def test_json_columns_are_written_only_for_a_changed_object(
    store: Store, sql_engine: AsyncEngine
) -> None:
    error = ErrorInfo(kind="lost", message="worker died", step="a")
    job = await insert(store, make_job(outputs={"a": 1}, crashes={"a": 1}, error=error))
    await execute(
        sql_engine,
        "UPDATE jobs SET params = CAST(:p AS jsonb), outputs = CAST(:o AS jsonb),"
        " crashes = CAST(:c AS jsonb), error = CAST(:e AS jsonb)",
        p='{"p": "behind"}',
        o='{"o": "behind"}',
        c='{"c": 9}',
        e='{"kind": "behind", "message": "m"}',
    )

    async with store.transaction() as tx:
        assert await tx.lock_job(job.job_id) is not None
        # ``job`` is the state this store wrote: the same objects stay unwritten.
        after = dataclasses.replace(job, status=JobStatus.RUNNING, updated_at=LATER)
        await tx.save_job(job, after, [], [], None)

    untouched = await lock(store, job.job_id)
    assert untouched is not None
    assert untouched.status == JobStatus.RUNNING
    assert (untouched.params, untouched.outputs, untouched.crashes) == (
        {"p": "behind"},
        {"o": "behind"},
        {"c": 9},
    )
    assert untouched.error == ErrorInfo(kind="behind", message="m")

    async with store.transaction() as tx:
        assert await tx.lock_job(job.job_id) is not None
        rewritten = dataclasses.replace(after, outputs={"a": 1}, crashes={"a": 1}, error=None)
        await tx.save_job(after, rewritten, [], [], None)

    stored = await lock(store, job.job_id)
    assert stored is not None
    assert (stored.params, stored.outputs, stored.crashes) == ({"p": "behind"}, {"a": 1}, {"a": 1})
    assert stored.error is None


# --- locking order ---------------------------------------------------------------------


async def test_overlapping_lock_sets_wait_for_each_other(store: Store) -> None:
    a, b, c = sorted([uuid4(), uuid4(), uuid4()])
    for job_id in (a, b, c):
        await insert(store, make_job(job_id=job_id))

    async def lock_in_other_transaction() -> set[UUID]:
        async with store.transaction() as tx:
            return set(await tx.lock_jobs([b, c]))

    async with store.transaction() as first:
        assert set(await first.lock_jobs([a, b])) == {a, b}
        second = asyncio.create_task(lock_in_other_transaction())
        await asyncio.sleep(0.3)
        assert not second.done(), "the second transaction waits for job b"

    assert await asyncio.wait_for(second, timeout=10) == {b, c}


async def test_jobs_are_locked_in_id_order_so_opposite_orders_do_not_deadlock(
    store: Store,
) -> None:
    low, high = sorted([uuid4(), uuid4()])
    # Stored high first, so that a lock in storage or argument order would take it first.
    for job_id in (high, low):
        await insert(store, make_job(job_id=job_id))

    async def lock_both_in_other_transaction() -> set[UUID]:
        async with store.transaction() as tx:
            return set(await tx.lock_jobs([high, low]))

    async with store.transaction() as first:
        assert await first.lock_job(low) is not None
        second = asyncio.create_task(lock_both_in_other_transaction())
        await asyncio.sleep(0.3)
        assert not second.done(), "the second transaction waits for the lower id first"
        # Had the second transaction taken ``high`` already, this would deadlock.
        assert await asyncio.wait_for(first.lock_job(high), timeout=10) is not None

    assert await asyncio.wait_for(second, timeout=10) == {low, high}


# --- definitions -----------------------------------------------------------------------


async def refuse_definition_inserts(engine: AsyncEngine) -> None:
    """Make every further insert into ``workflow_definitions`` fail, even a conflicting one."""
    await execute(
        engine,
        "CREATE FUNCTION refuse_definition() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'definition inserted again'; END $$",
    )
    await execute(
        engine,
        "CREATE TRIGGER refuse_definition BEFORE INSERT ON workflow_definitions"
        " FOR EACH ROW EXECUTE FUNCTION refuse_definition()",
    )


async def test_a_stored_definition_is_not_inserted_again(
    store: Store, sql_engine: AsyncEngine
) -> None:
    assert not store.definitions.is_stored(WORKFLOW_HASH)
    await insert(store, make_job())
    assert store.definitions.is_stored(WORKFLOW_HASH)
    await refuse_definition_inserts(sql_engine)

    second = await insert(store, make_job())

    assert await lock(store, second.job_id) == second
    assert await scalar(sql_engine, "SELECT count(*) FROM workflow_definitions") == 1


async def test_a_store_unaware_of_a_stored_definition_would_insert_it_again(
    store: Store, database_url: str, sql_engine: AsyncEngine
) -> None:
    # Guards the test above: a store that does not know the definition is stored
    # inserts it again (ON CONFLICT DO NOTHING), and the trigger catches that.
    await insert(store, make_job())
    await refuse_definition_inserts(sql_engine)
    other = await Store.connect(database_url, pool_size=1)
    try:
        with pytest.raises(asyncpg.RaiseError, match="definition inserted again"):
            await insert(other, make_job())
    finally:
        await other.close()


async def test_a_definition_read_back_counts_as_stored(store: Store, database_url: str) -> None:
    job = await insert(store, make_job())
    other = await Store.connect(database_url, pool_size=1)
    try:
        assert not other.definitions.is_stored(WORKFLOW_HASH)
        assert await lock(other, job.job_id) == job
        assert other.definitions.is_stored(WORKFLOW_HASH)
    finally:
        await other.close()


async def test_a_rolled_back_definition_does_not_count_as_stored(store: Store) -> None:
    async def insert_then_crash() -> None:
        async with store.transaction() as tx:
            await tx.insert_job(make_job(), [Record("job_submitted")], [], None)
            raise RuntimeError("handler crashed")

    with pytest.raises(RuntimeError):
        await insert_then_crash()

    assert not store.definitions.is_stored(WORKFLOW_HASH)
    job = await insert(store, make_job())
    assert await lock(store, job.job_id) == job
    assert store.definitions.is_stored(WORKFLOW_HASH)


# --- timezone-aware datetimes ----------------------------------------------------------


def naive_write(field: str, stored: Job) -> list[JobWrite]:
    """A write of a new job and of ``stored`` with one naive datetime, named by ``field``."""
    fresh = make_job()
    attempt = make_attempt(stored.job_id, 1)
    after = dataclasses.replace(stored, updated_at=LATER, attempts=(attempt,))
    match field:
        case "new job":
            fresh = dataclasses.replace(fresh, created_at=NAIVE)
        case "saved job":
            after = dataclasses.replace(after, finished_at=NAIVE)
        case "attempt":
            after = dataclasses.replace(
                after, attempts=(dataclasses.replace(attempt, due_at=NAIVE),)
            )
    wake_at = NAIVE if field == "wake_at" else None
    return [
        new(fresh, [Record("job_submitted")]),
        JobWrite(stored, after, 1, [Record("step_scheduled")], wake_at),
    ]


NAIVE_FIELDS = [
    "new job",
    "saved job",
    "attempt",
    "history",
    "wake_at",
]


async def assert_nothing_written(store: Store, sql_engine: AsyncEngine, stored: Job) -> None:
    assert await scalar(sql_engine, "SELECT count(*) FROM jobs") == 1
    assert await lock(store, stored.job_id) == stored
    assert await history(store, stored.job_id) == [(1, "job_submitted")]
    assert await scalar(sql_engine, "SELECT wake_at FROM jobs") is None
    assert await store.outbox_size() == 0


@pytest.mark.parametrize("field", NAIVE_FIELDS)
async def test_a_naive_datetime_is_refused_and_nothing_is_stored(
    store: Store, sql_engine: AsyncEngine, field: str
) -> None:
    stored = await insert(store, make_job())

    async def write_in_a_transaction() -> None:
        async with store.transaction() as tx:
            await tx.lock_job(stored.job_id)
            at = NAIVE if field == "history" else NOW
            await tx.write(naive_write(field, stored), [message()], at=at)

    with pytest.raises(ValueError, match="timezone-aware"):
        await write_in_a_transaction()

    await assert_nothing_written(store, sql_engine, stored)


@pytest.mark.parametrize(
    "field",
    [
        "new job",
        "saved job",
        "attempt",
        "history",
        "wake_at",
    ],
)
async def test_a_naive_datetime_is_refused_before_anything_is_written(
    store: Store, sql_engine: AsyncEngine, field: str
) -> None:
    stored = await insert(store, make_job())

    async with store.transaction() as tx:
        await tx.lock_job(stored.job_id)
        at = NAIVE if field == "history" else NOW
        with pytest.raises(ValueError, match="timezone-aware"):
            await tx.write(naive_write(field, stored), [message()], at=at)

    await assert_nothing_written(store, sql_engine, stored)


async def test_postponing_to_a_naive_datetime_is_refused(store: Store) -> None:
    job = await insert(store, make_job(), wake_at=NOW)

    with pytest.raises(ValueError, match="timezone-aware"):
        await store.postpone_wakeup(job.job_id, NAIVE)


# --- timers ----------------------------------------------------------------------------


async def test_due_jobs_are_the_jobs_whose_time_has_come_earliest_first(store: Store) -> None:
    late = await insert(store, make_job(), wake_at=NOW - timedelta(seconds=1))
    early = await insert(store, make_job(), wake_at=NOW - timedelta(minutes=1))
    await insert(store, make_job(), wake_at=NOW + timedelta(seconds=1))
    await insert(store, make_job(), wake_at=None)

    async with store.transaction() as tx:
        due = await tx.due_jobs(NOW, limit=10)

    assert due == [Locked(early, 1), Locked(late, 1)]


async def test_concurrent_sweepers_get_disjoint_jobs(store: Store) -> None:
    for _ in range(5):
        await insert(store, make_job(), wake_at=NOW)

    async with store.transaction() as first:
        taken_first = await first.due_jobs(NOW, limit=2)
        async with store.transaction() as second:
            taken_second = await second.due_jobs(NOW, limit=10)

    first_ids = {locked.job.job_id for locked in taken_first}
    second_ids = {locked.job.job_id for locked in taken_second}
    assert len(first_ids) == 2
    assert len(second_ids) == 3
    assert not first_ids & second_ids


async def test_postpone_wakeup_moves_only_the_wake_up_time(store: Store) -> None:
    job = await insert(store, make_job(), wake_at=NOW)
    other = await insert(store, make_job(), wake_at=NOW)

    await store.postpone_wakeup(job.job_id, LATER)

    async with store.transaction() as tx:
        due_now = await tx.due_jobs(NOW, limit=10)
        due_later = await tx.due_jobs(LATER, limit=10)
    assert due_now == [Locked(other, 1)]
    assert due_later == [Locked(other, 1), Locked(job, 1)]


# --- outbox ----------------------------------------------------------------------------


async def outbox_ids(store: Store, count: int) -> list[int]:
    """Write ``count`` outbox messages with a new job; return their ids."""
    async with store.transaction() as tx:
        ids = await tx.insert_job(make_job(), [], [message(str(n)) for n in range(count)], None)
    assert ids is not None
    assert len(ids) == count
    return ids


async def test_claimed_messages_read_back_as_written(store: Store) -> None:
    sent = [
        message(),
        dataclasses.replace(message("b"), message_id=None, priority=None, headers={}),
    ]
    async with store.transaction() as tx:
        ids = await tx.insert_job(make_job(), [], sent, None)
    assert ids is not None

    async with store.claim_outbox() as claim:
        rows = claim.rows

    assert rows == [OutboxRow(row_id, m) for row_id, m in zip(ids, sent, strict=True)]


async def test_concurrent_claimers_get_disjoint_messages(store: Store) -> None:
    ids = await outbox_ids(store, 5)

    async with store.claim_outbox(None, limit=2) as first:
        async with store.claim_outbox(None, limit=10) as second:
            second_ids = [row.id for row in second.rows]
            await second.delete(second_ids)
        first_ids = [row.id for row in first.rows]
        await first.delete(first_ids)

    assert first_ids == ids[:2]
    assert second_ids == ids[2:]
    assert await store.outbox_size() == 0


async def test_messages_are_deleted_only_once_the_claim_commits(store: Store) -> None:
    ids = await outbox_ids(store, 3)

    async with store.claim_outbox() as claim:
        assert len(claim.rows) == 3
        await claim.delete(ids[:1])
        assert await store.outbox_size() == 3

    assert await store.outbox_size() == 2
    assert [row.id for row in await claimed(store)] == ids[1:]


async def test_messages_survive_a_failed_publish(store: Store) -> None:
    ids = await outbox_ids(store, 2)

    async def publish_failing() -> None:
        async with store.claim_outbox() as claim:
            await claim.delete(ids)
            raise ConnectionError("broker went away")

    with pytest.raises(ConnectionError):
        await publish_failing()

    assert [row.id for row in await claimed(store)] == ids


async def test_claiming_by_age_picks_up_left_behind_messages(
    store: Store, sql_engine: AsyncEngine
) -> None:
    ids = await outbox_ids(store, 2)
    db_now = await scalar(sql_engine, "SELECT now()")

    async with store.claim_outbox(older_than=db_now - timedelta(minutes=1)) as claim:
        assert claim.rows == []
    async with store.claim_outbox(older_than=db_now + timedelta(minutes=1)) as claim:
        assert [row.id for row in claim.rows] == ids


async def test_claiming_passes_over_skipped_ids(store: Store) -> None:
    ids = await outbox_ids(store, 4)

    async with store.claim_outbox(skip=[ids[0], ids[2]]) as claim:
        assert [row.id for row in claim.rows] == [ids[1], ids[3]]
    async with store.claim_outbox(limit=1, skip=ids[:1]) as claim:
        assert [row.id for row in claim.rows] == [ids[1]]
    async with store.claim_outbox(skip=ids) as claim:
        assert claim.rows == []
        await claim.delete([])

    assert await store.outbox_size() == 4


async def test_claim_in_a_job_transaction_locks_and_deletes_with_it(store: Store) -> None:
    ids = await outbox_ids(store, 3)

    async with store.transaction() as tx:
        rows = await tx.claim_outbox(None, limit=2)
        assert [row.id for row in rows] == ids[:2]
        async with store.claim_outbox() as other:
            assert [row.id for row in other.rows] == ids[2:]
        await tx.delete_outbox([row.id for row in rows])
        await tx.delete_outbox([])

    assert [row.id for row in await claimed(store)] == ids[2:]


async def test_delete_outbox_removes_just_those_rows(store: Store) -> None:
    ids = await outbox_ids(store, 4)

    await store.delete_outbox([ids[0], ids[2]])
    await store.delete_outbox([])
    await store.delete_outbox([ids[0]])

    assert [row.id for row in await claimed(store)] == [ids[1], ids[3]]
    assert await store.outbox_size() == 2


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


async def test_purge_deletes_old_finished_jobs_with_their_rows(
    store: Store, sql_engine: AsyncEngine
) -> None:
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
    assert await scalar(sql_engine, "SELECT count(*) FROM step_attempts") == 0
    assert await scalar(sql_engine, "SELECT count(*) FROM job_events") == 2


async def test_ping_answers(store: Store) -> None:
    await store.ping()
