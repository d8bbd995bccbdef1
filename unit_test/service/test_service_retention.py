"""Retention deletes what is past its age in bounded batches, counts and logs each
batch, keeps going after a failure, and does nothing when told to keep everything."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from structlog.testing import capture_logs

from fakes import T0, Clock
from segue.service.retention import Retention, run_retention

KEEP = timedelta(days=30)
CUTOFF = T0 - KEEP


class FakePrunableStore:
    """Holds a number of old jobs and cancels; records every purge call."""

    def __init__(self, jobs: int = 0, cancels: int = 0, failures: int = 0, outbox: int = 0) -> None:
        self.jobs = jobs
        self.cancels = cancels
        self.outbox = outbox
        self.failures = failures
        self.calls: list[tuple[str, datetime, int]] = []

    async def purge_finished_jobs(self, updated_before: datetime, limit: int = 500) -> int:
        self.calls.append(("jobs", updated_before, limit))
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("database went away")
        deleted = min(limit, self.jobs)
        self.jobs -= deleted
        return deleted

    async def purge_pending_cancels(self, created_before: datetime, limit: int = 500) -> int:
        self.calls.append(("cancels", created_before, limit))
        deleted = min(limit, self.cancels)
        self.cancels -= deleted
        return deleted

    async def purge_quarantined_outbox(self, quarantined_before: datetime, limit: int = 500) -> int:
        self.calls.append(("outbox", quarantined_before, limit))
        deleted = min(limit, self.outbox)
        self.outbox -= deleted
        return deleted


class Tally:
    """Records what a metric was incremented by."""

    def __init__(self) -> None:
        self.amounts: list[float] = []

    def __call__(self, amount: float) -> None:
        self.amounts.append(amount)


def retention(store: FakePrunableStore, keep: timedelta = KEEP, **counts: Tally) -> Retention:
    return Retention(store, keep, Clock(), batch=10, pause_s=0, **counts)


async def test_prune_deletes_everything_past_the_age_in_bounded_batches() -> None:
    store = FakePrunableStore(jobs=25, cancels=3, outbox=12)
    jobs, cancels, outbox = Tally(), Tally(), Tally()

    pruned = await retention(
        store, count_jobs=jobs, count_cancels=cancels, count_outbox=outbox
    ).prune()

    assert pruned == (25, 3)
    assert (store.jobs, store.cancels, store.outbox) == (0, 0, 0)
    assert store.calls == [
        ("jobs", CUTOFF, 10),
        ("jobs", CUTOFF, 10),
        ("jobs", CUTOFF, 10),
        ("cancels", CUTOFF, 10),
        ("outbox", CUTOFF, 10),
        ("outbox", CUTOFF, 10),
    ]
    assert jobs.amounts == [10, 10, 5]
    assert cancels.amounts == [3]
    assert outbox.amounts == [10, 2]


async def test_a_full_last_batch_is_followed_by_one_that_finds_nothing() -> None:
    store = FakePrunableStore(jobs=20)

    assert await retention(store).prune() == (20, 0)

    assert [call[0] for call in store.calls] == ["jobs", "jobs", "jobs", "cancels", "outbox"]


async def test_each_batch_is_logged_once_with_its_count_and_cutoff() -> None:
    store = FakePrunableStore(jobs=15, cancels=2)

    with capture_logs() as logs:
        await retention(store).prune()

    assert [(log["event"], log["count"], log["cutoff"]) for log in logs] == [
        ("jobs_pruned", 10, CUTOFF.isoformat()),
        ("jobs_pruned", 5, CUTOFF.isoformat()),
        ("pending_cancels_pruned", 2, CUTOFF.isoformat()),
    ]


async def test_nothing_to_prune_logs_nothing() -> None:
    with capture_logs() as logs:
        assert await retention(FakePrunableStore()).prune() == (0, 0)
    assert logs == []


async def test_the_loop_pauses_between_batches() -> None:
    store = FakePrunableStore(jobs=30)
    slow = Retention(store, KEEP, Clock(), batch=10, pause_s=0.05)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await slow.prune()

    assert loop.time() - started >= 3 * 0.05 * 0.9  # after each of the three full batches


async def test_keeping_everything_never_deletes() -> None:
    store = FakePrunableStore(jobs=5)

    await asyncio.wait_for(run_retention(retention(store, keep=timedelta(0)), 0.01), 1)

    assert store.calls == []


async def test_the_loop_goes_on_after_a_failed_pass() -> None:
    store = FakePrunableStore(jobs=5, failures=1)

    with capture_logs() as logs:
        task = asyncio.create_task(run_retention(retention(store), 0.01))
        for _ in range(100):
            if store.jobs == 0:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert store.jobs == 0
    assert logs[0]["event"] == "prune_failed"
    assert "database went away" in logs[0]["error"]
