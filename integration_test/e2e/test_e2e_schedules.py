"""Recurring jobs with several replicas: each due time of a schedule makes exactly one
job, whether two scheduler loops on separate connection pools race for it or two
whole orchestrators do; a schedule that missed many runs fires once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from segue.protocol.envelope import Outgoing
from segue.protocol.names import Names
from segue.service.applier import Applier
from segue.service.failures import is_transient
from segue.service.recurrence import scheduled_job_id
from segue.service.scheduler import Scheduler
from segue.settings import Settings
from segue.store.repository import OutboxRow, Store
from segue.store.schedules import NewSchedule, ScheduleSource, ScheduleStore
from segue.workflows.loader import load_workflows

from .conftest import DEMO_CONFIG, free_port, running_service

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
FAST = {"step_seconds": 0.1}


class Clock:
    """A clock the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Unsent:
    """A sender that publishes nothing (these tests look at the database only)."""

    async def send(self, rows: Sequence[OutboxRow], notices: Sequence[Outgoing] = ()) -> int:
        return 0


def schedule(name: str, cron: str, next_due_at: datetime) -> NewSchedule:
    return NewSchedule(
        name=name,
        workflow="energy_plan",
        cron=cron,
        timezone="UTC",
        params=FAST,
        priority=5,
        enabled=True,
        next_due_at=next_due_at,
        source=ScheduleSource.CLI,
    )


async def scheduled_jobs(store: Store, name: str) -> dict[UUID, str]:
    """Job id -> reference of the jobs schedule ``name`` submitted."""
    async with store.transaction() as tx:
        rows = await tx.connection.fetch(
            "SELECT job_id, reference FROM jobs WHERE reference LIKE $1", f"schedule:{name}@%"
        )
    return {row["job_id"]: row["reference"] for row in rows}


async def test_two_scheduler_loops_on_separate_pools_fire_each_due_time_once(
    database_url: str, store: Store
) -> None:
    catalog = load_workflows(DEMO_CONFIG)
    clock = Clock(T0)
    await ScheduleStore(store).add(schedule("every_minute", "* * * * *", T0))
    await ScheduleStore(store).add(schedule("every_two", "*/2 * * * *", T0))
    replicas = [await Store.connect(database_url, pool_size=4) for _ in range(2)]
    try:
        schedulers = [
            Scheduler(
                replica,
                Applier(replica, Unsent(), Names("t"), clock, is_transient),
                catalog,
                clock,
            )
            for replica in replicas
        ]
        for minute in range(10):
            clock.now = T0 + timedelta(minutes=minute, seconds=1)
            # Each replica looks three times per due time, all at once.
            await asyncio.gather(*(s.fire_due() for s in schedulers for _ in range(3)))
    finally:
        for replica in replicas:
            await replica.close()

    every_minute = await scheduled_jobs(store, "every_minute")
    due_times = [T0 + timedelta(minutes=m) for m in range(10)]
    assert set(every_minute) == {scheduled_job_id("every_minute", due) for due in due_times}
    every_two = await scheduled_jobs(store, "every_two")
    assert set(every_two) == {scheduled_job_id("every_two", due) for due in due_times[::2]}
    row = await ScheduleStore(store).get("every_minute")
    assert row is not None
    assert row.last_due_at == due_times[-1]
    assert row.next_due_at == T0 + timedelta(minutes=10)


async def test_a_schedule_that_missed_runs_fires_once_then_resumes_its_rhythm(
    store: Store,
) -> None:
    clock = Clock(T0 + timedelta(hours=5, seconds=30))
    await ScheduleStore(store).add(schedule("every_five", "*/5 * * * *", T0))
    scheduler = Scheduler(
        store,
        Applier(store, Unsent(), Names("t"), clock, is_transient),
        load_workflows(DEMO_CONFIG),
        clock,
    )

    assert await scheduler.fire_due() == 1
    assert await scheduler.fire_due() == 0

    assert set(await scheduled_jobs(store, "every_five")) == {scheduled_job_id("every_five", T0)}
    row = await ScheduleStore(store).get("every_five")
    assert row is not None
    assert row.next_due_at == T0 + timedelta(hours=5, minutes=5)


@pytest.fixture
def scheduled_config(tmp_path: Path) -> Path:
    """The demo workflows with a yearly schedule (due times are set by the test)."""
    config = json.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    config.pop("$schema", None)
    config["schedules"] = [
        {"name": "yearly", "workflow": "energy_plan", "cron": "0 0 1 1 *", "params": FAST}
    ]
    path = tmp_path / "workflow_config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


async def test_two_orchestrators_fire_each_due_time_of_a_file_schedule_once(
    settings: Settings, scheduled_config: Path, store: Store
) -> None:
    fast = {"workflow_config": scheduled_config, "schedule_interval_s": 0.05}
    first = settings.model_copy(update=fast)
    second = settings.model_copy(update={**fast, "http_port": free_port()})
    now = datetime.now(UTC).replace(microsecond=0)
    due_times = [now - timedelta(minutes=minutes) for minutes in (40, 30, 20, 10)]
    async with running_service(first), running_service(second):
        await wait_for_schedule(store, "yearly")
        for due in due_times:
            async with store.transaction() as tx:
                await tx.connection.execute(
                    "UPDATE schedules SET next_due_at = $1 WHERE name = 'yearly'", due
                )
            await wait_for_fired(store, "yearly", due)

    jobs = await scheduled_jobs(store, "yearly")
    assert set(jobs) == {scheduled_job_id("yearly", due) for due in due_times}
    assert sorted(jobs.values()) == sorted(
        f"schedule:yearly@{due.isoformat()}" for due in due_times
    )


async def wait_for_schedule(store: Store, name: str, timeout_s: float = 20) -> None:
    """Until an orchestrator stored the file's schedule ``name``."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await ScheduleStore(store).get(name) is not None:
                return
            await asyncio.sleep(0.05)


async def wait_for_fired(store: Store, name: str, due: datetime, timeout_s: float = 20) -> None:
    """Until schedule ``name`` fired for ``due``."""
    async with asyncio.timeout(timeout_s):
        while True:
            row = await ScheduleStore(store).get(name)
            if row is not None and row.last_due_at == due:
                return
            await asyncio.sleep(0.05)
