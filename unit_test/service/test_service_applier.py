"""The applier folds a batch of events into one transaction per batch, and keeps one
poison job from stopping the timers of the others."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from fakes import Clock, FakeJobStore, FakeSender
from segue.engine import events as ev
from segue.engine.effects import Decision, Record
from segue.engine.machine import decide
from segue.engine.state import Job
from segue.protocol.codec import TASK_ADAPTER, UPDATE_ADAPTER, decode
from segue.protocol.messages import (
    AttemptStatus,
    CancelAttempt,
    JobFinished,
    JobProgressed,
    JobStatus,
    JobStatusChanged,
)
from segue.service.applier import MAX_POSTPONE, POSTPONE_FAILED_TIMER, Applier, Change
from segue.service.failures import is_transient
from segue.store.repository import ConcurrentInsertError
from segue.workflows.loader import Catalog
from shell_builders import (
    JOB_TIMEOUT_S,
    NAMES,
    applier,
    catalog,
    first_attempt,
    submitted,
)

JOB_A = UUID("00000000-0000-4000-8000-00000000000a")
JOB_B = UUID("00000000-0000-4000-8000-00000000000b")
JOB_C = UUID("00000000-0000-4000-8000-00000000000c")
POISON = UUID("00000000-0000-4000-8000-0000000000ff")


@pytest.fixture
def workflows() -> Catalog:
    return catalog()


def quick(workflows: Catalog, job_id: UUID) -> Change:
    loaded = workflows.get("quick_check")
    assert loaded is not None
    return submitted(loaded, job_id)


def slow(workflows: Catalog, job_id: UUID) -> Change:
    loaded = workflows.get("slow_plan")
    assert loaded is not None
    return submitted(loaded, job_id)


def data_error() -> Exception:
    """A permanent failure: the same write fails every time (SQLSTATE class 22)."""
    error: Exception = asyncpg.exceptions.DataError("value out of range")
    return error


def deadlock() -> Exception:
    """A transient failure (SQLSTATE 40P01)."""
    error: Exception = asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
    return error


async def test_submit_start_and_result_of_one_job_fold_into_one_write(workflows: Catalog) -> None:
    store, sender = FakeJobStore(), FakeSender()
    attempt_id = first_attempt(JOB_A)
    changes = [
        quick(workflows, JOB_A),
        Change(JOB_A, ev.StepStarted(attempt_id, "w1")),
        Change(JOB_A, ev.StepSucceeded(attempt_id, {"ok": True}, "w1")),
    ]

    applied = await applier(store, sender).apply(changes)

    assert [a.found for a in applied] == [False, True, True]
    assert [a.decision.rejected or a.decision.ignored for a in applied] == [None, None, None]
    assert len(store.committed) == 1
    (write,) = store.committed[0]
    assert write.before is None
    assert write.after.status is JobStatus.SUCCEEDED
    assert store.history_types(JOB_A) == [
        "job_submitted",
        "step_dispatched",
        "step_started",
        "step_succeeded",
        "job_succeeded",
    ]
    assert [row.seq for row in store.history[JOB_A]] == [1, 2, 3, 4, 5]
    assert store.jobs[JOB_A].last_seq == 5
    # Durable: the task and the result, in effect order; no notice for a finished job.
    task, result = (row.message for row in sender.rows)
    assert (task.exchange, task.routing_key) == (NAMES.tasks_exchange, "q-check")
    assert decode(TASK_ADAPTER, task.body).attempt_id == attempt_id
    assert result.routing_key == f"job.{JOB_A}.result"
    finished = decode(UPDATE_ADAPTER, result.body)
    assert isinstance(finished, JobFinished)
    assert finished.output == {"ok": True}
    assert sender.notices == []
    assert sorted(row.id for row in sender.rows) == sorted(store.outbox)


async def test_several_jobs_in_one_batch_share_one_transaction(workflows: Catalog) -> None:
    store, sender = FakeJobStore(), FakeSender()

    applied = await applier(store, sender).apply(
        [quick(workflows, job_id) for job_id in (JOB_C, JOB_A, JOB_B)]
    )

    assert [a.decision.job.job_id for a in applied if a.decision.job] == [JOB_C, JOB_A, JOB_B]
    assert store.transactions == 1
    assert [set(ids) for ids in store.locked] == [{JOB_A, JOB_B, JOB_C}]
    assert len(store.committed) == 1
    assert {w.after.job_id for w in store.committed[0]} == {JOB_A, JOB_B, JOB_C}
    tasks = [decode(TASK_ADAPTER, m.body) for m in sender.messages]
    assert [task.job_id for task in tasks] == [JOB_C, JOB_A, JOB_B]
    statuses = [decode(UPDATE_ADAPTER, notice.body) for notice in sender.notices]
    assert [(s.job_id, s.status) for s in statuses if isinstance(s, JobStatusChanged)] == [
        (JOB_C, JobStatus.QUEUED),
        (JOB_A, JobStatus.QUEUED),
        (JOB_B, JobStatus.QUEUED),
    ]
    assert sender.calls == 1


async def test_only_the_newest_notice_of_each_kind_is_sent(workflows: Catalog) -> None:
    store, sender = FakeJobStore(), FakeSender()
    shell = applier(store, sender)
    await shell.apply([quick(workflows, JOB_A)])
    sender.notices.clear()
    attempt_id = first_attempt(JOB_A)

    await shell.apply(
        [
            Change(JOB_A, ev.StepStarted(attempt_id, "w1")),
            Change(JOB_A, ev.StepProgressed(attempt_id, 0.3, "a third", "w1")),
            Change(JOB_A, ev.StepProgressed(attempt_id, 0.6, "two thirds", "w1")),
        ]
    )

    updates = [decode(UPDATE_ADAPTER, notice.body) for notice in sender.notices]
    assert len(updates) == 2
    status, progress = updates
    assert isinstance(status, JobStatusChanged)
    assert status.status is JobStatus.RUNNING
    assert isinstance(progress, JobProgressed)
    assert (progress.fraction, progress.message) == (0.6, "two thirds")
    assert store.history_types(JOB_A)[-3:] == ["step_started", "step_progress", "step_progress"]


async def test_an_event_of_an_unknown_job_is_not_found_and_writes_nothing() -> None:
    store, sender = FakeJobStore(), FakeSender()

    (result,) = await applier(store, sender).apply(
        [Change(JOB_A, ev.StepSucceeded(first_attempt(JOB_A), {}))]
    )

    assert result.found is False
    assert result.decision.job is None
    assert store.write_calls == []
    assert store.jobs == {}
    assert sender.rows == []


async def test_found_is_per_change_in_a_mixed_batch(workflows: Catalog) -> None:
    store = FakeJobStore()
    shell = applier(store)
    await shell.apply([quick(workflows, JOB_A)])

    applied = await shell.apply(
        [
            Change(JOB_B, ev.CancelRequested()),
            Change(JOB_A, ev.CancelRequested()),
            Change(JOB_C, ev.StepHeartbeat(first_attempt(JOB_C))),
        ]
    )

    assert [a.found for a in applied] == [False, True, False]
    assert store.job(JOB_A).status is JobStatus.CANCELLED
    assert set(store.jobs) == {JOB_A}


async def test_a_job_inserted_meanwhile_by_another_replica_restarts_the_batch_once(
    workflows: Catalog,
) -> None:
    store, sender, other_sender = FakeJobStore(), FakeSender(), FakeSender()
    other_replica = applier(store, other_sender)

    async def insert_meanwhile() -> None:
        await other_replica.apply([quick(workflows, JOB_A)])

    store.before_next_write(insert_meanwhile)

    (result,) = await applier(store, sender).apply([quick(workflows, JOB_A)])

    assert store.rollbacks == 1
    assert result.found is True
    assert result.decision.ignored == "duplicate submission"
    assert store.history_types(JOB_A) == ["job_submitted", "step_dispatched", "submission_ignored"]
    # One task in all: the other replica's; this one only re-announces the status.
    assert len(other_sender.rows) == 1
    assert sender.rows == []


async def test_a_second_concurrent_insert_is_not_retried_again(workflows: Catalog) -> None:
    store, sender = FakeJobStore(), FakeSender()
    store.fail_next_write(ConcurrentInsertError("stored meanwhile"))
    store.fail_next_write(ConcurrentInsertError("stored meanwhile, again"))

    with pytest.raises(ConcurrentInsertError, match="again"):
        await applier(store, sender).apply([quick(workflows, JOB_A)])

    assert (store.transactions, store.rollbacks) == (2, 2)
    assert store.jobs == {}
    assert sender.calls == 0


async def test_a_failed_batch_stores_nothing_and_sends_nothing(workflows: Catalog) -> None:
    store, sender = FakeJobStore(), FakeSender()
    store.fail_next_write(data_error())

    with pytest.raises(asyncpg.exceptions.DataError):
        await applier(store, sender).apply([quick(workflows, JOB_A), quick(workflows, JOB_B)])

    assert store.rollbacks == 1
    assert store.jobs == {}
    assert store.outbox == {}
    assert sender.calls == 0


# --- timers ----------------------------------------------------------------------------


async def submit_slow_jobs(
    workflows: Catalog, store: FakeJobStore, clock: Clock, *job_ids: UUID
) -> None:
    """Submit ``slow_plan`` jobs one second apart (the first is due first)."""
    for job_id in job_ids:
        await applier(store, clock=clock).apply([slow(workflows, job_id)])
        clock.advance(1)


async def test_sweep_fires_due_timers(workflows: Catalog) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    await submit_slow_jobs(workflows, store, clock, JOB_A, JOB_B)
    clock.advance(JOB_TIMEOUT_S)  # JOB_A and JOB_B are due

    due = await applier(store, sender, clock).sweep(limit=100)

    assert due == 2
    for job_id in (JOB_A, JOB_B):
        assert store.job(job_id).status is JobStatus.TIMED_OUT
        assert store.job(job_id).attempts[0].status is AttemptStatus.TIMED_OUT
        assert store.wake_at[job_id] is None
        assert store.history_types(job_id)[-1] == "job_timed_out"
    results = {m.routing_key for m in sender.messages if m.exchange == NAMES.updates_exchange}
    assert results == {f"job.{JOB_A}.result", f"job.{JOB_B}.result"}
    stops = [m for m in sender.messages if m.exchange == NAMES.control_exchange]
    assert len(stops) == 2
    assert all(isinstance(decode_stop(m.body), CancelAttempt) for m in stops)


def decode_stop(data: bytes) -> CancelAttempt:
    return CancelAttempt.model_validate_json(data)


async def test_sweep_leaves_jobs_that_are_not_due(workflows: Catalog) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    await submit_slow_jobs(workflows, store, clock, JOB_A, JOB_B)
    clock.advance(JOB_TIMEOUT_S - 1.5)  # only JOB_A is due

    due = await applier(store, sender, clock).sweep(limit=100)

    assert due == 1
    assert store.job(JOB_A).status is JobStatus.TIMED_OUT
    assert store.job(JOB_B).status is JobStatus.QUEUED


async def test_one_poison_job_cannot_stop_the_timers_of_the_others(workflows: Catalog) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    # The poison job is the earliest due, so it heads every batch of due jobs.
    await submit_slow_jobs(workflows, store, clock, POISON, JOB_A, JOB_B)
    store.fail_writes_of(POISON, data_error)
    now = clock.advance(JOB_TIMEOUT_S + 5)
    shell = applier(store, sender, clock)

    due = await shell.sweep(limit=100)

    assert due == 3
    assert store.job(JOB_A).status is JobStatus.TIMED_OUT
    assert store.job(JOB_B).status is JobStatus.TIMED_OUT
    assert store.job(POISON).status is JobStatus.QUEUED
    assert store.postponed == [(POISON, now + POSTPONE_FAILED_TIMER)]
    results = {m.routing_key for m in sender.messages if m.exchange == NAMES.updates_exchange}
    assert results == {f"job.{JOB_A}.result", f"job.{JOB_B}.result"}

    # The next passes do not trip over it until its postponed time.
    await submit_slow_jobs(workflows, store, clock, JOB_C)
    clock.advance(JOB_TIMEOUT_S)
    assert await shell.sweep(limit=100) == 1
    assert store.job(JOB_C).status is JobStatus.TIMED_OUT
    assert len(store.postponed) == 1


async def test_a_transient_failure_in_sweep_propagates_and_postpones_nothing(
    workflows: Catalog,
) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    await submit_slow_jobs(workflows, store, clock, JOB_A, JOB_B)
    store.fail_writes_of(JOB_B, deadlock)
    clock.advance(JOB_TIMEOUT_S + 5)

    with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
        await applier(store, sender, clock).sweep(limit=100)

    assert store.postponed == []
    assert store.job(JOB_A).status is JobStatus.QUEUED
    assert store.job(JOB_B).status is JobStatus.QUEUED
    assert sender.rows == []


async def test_a_transient_failure_while_retrying_jobs_alone_propagates(
    workflows: Catalog,
) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    await submit_slow_jobs(workflows, store, clock, POISON, JOB_A)
    store.fail_writes_of(POISON, data_error)
    store.fail_writes_of(JOB_A, deadlock)
    clock.advance(JOB_TIMEOUT_S + 5)

    with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
        await applier(store, sender, clock).sweep(limit=100)

    assert [job_id for job_id, _ in store.postponed] == [POISON]
    assert store.job(JOB_A).status is JobStatus.QUEUED


async def test_a_job_whose_timers_keep_failing_waits_longer_each_time(workflows: Catalog) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    await submit_slow_jobs(workflows, store, clock, POISON)
    store.fail_writes_of(POISON, data_error)
    failures: list[int] = []
    shell = Applier(
        store, sender, NAMES, clock, is_transient, on_timer_failed=lambda: failures.append(1)
    )
    waits = []
    for _ in range(8):
        now = clock.advance(JOB_TIMEOUT_S + 3600 * 2)
        await shell.sweep(limit=100)
        waits.append(store.postponed[-1][1] - now)

    assert waits[:6] == [POSTPONE_FAILED_TIMER * 2**n for n in range(6)]
    assert waits[6:] == [MAX_POSTPONE, MAX_POSTPONE]  # capped
    assert len(failures) == 8


async def test_a_timer_the_engine_fails_on_is_postponed_not_tried_every_second(
    workflows: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    await submit_slow_jobs(workflows, store, clock, JOB_A)
    now = clock.advance(JOB_TIMEOUT_S + 1)

    def broken(job: Job | None, event: ev.Event, at: datetime) -> Decision:
        if isinstance(event, ev.TimerFired) and job is not None:
            record = Record("engine_error", {"event": "timer_fired", "error": "boom"})
            return Decision(job=job, records=(record,), ignored="boom", engine_error=True)
        return decide(job, event, at)

    monkeypatch.setattr("segue.service.applier.decide", broken)
    failures: list[int] = []
    shell = Applier(
        store, sender, NAMES, clock, is_transient, on_timer_failed=lambda: failures.append(1)
    )

    assert await shell.sweep(limit=100) == 1
    clock.advance(1)
    assert await shell.sweep(limit=100) == 0  # not due again a second later

    assert store.history_types(JOB_A).count("engine_error") == 1
    wake_at = store.wake_at[JOB_A]
    assert wake_at is not None
    assert wake_at >= now + MAX_POSTPONE
    assert failures == [1]


async def test_the_sweeper_judges_deadlines_at_the_events_horizon(workflows: Catalog) -> None:
    store, sender, clock = FakeJobStore(), FakeSender(), Clock()
    await submit_slow_jobs(workflows, store, clock, JOB_A)
    clock.advance(JOB_TIMEOUT_S + 10)
    horizon = clock() - timedelta(seconds=20)  # the events queue lags 20 s behind
    lags: list[float] = []
    shell = Applier(
        store, sender, NAMES, clock, is_transient, horizon=lambda: horizon, on_swept=lags.append
    )

    assert await shell.sweep(limit=100) == 0
    assert store.job(JOB_A).status is JobStatus.QUEUED

    horizon = clock()  # caught up
    assert await shell.sweep(limit=100) == 1
    assert store.job(JOB_A).status is JobStatus.TIMED_OUT
    assert lags == [20.0, 0.0], "how far behind the clock each sweep judged deadlines"
