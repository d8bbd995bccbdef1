"""The sampler sets the gauges from the database's and the broker's counts: every
job status (zero when none), each worker queue's depth, waiting tasks and oldest
age, the dead-letter queue, schedules; a queue that went away loses its series."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from fakes import T0, Clock
from segue.protocol.names import Names
from segue.service.metrics import Metrics
from segue.service.sampler import Sampler
from segue.store.stats import ScheduleCounts, Waiting

NAMES = Names("test")


class FakeStats:
    def __init__(self) -> None:
        self.jobs = {"running": 3, "succeeded": 40}
        self.tasks = [Waiting("simulate", 2, T0 - timedelta(seconds=300))]
        self.grace: timedelta | None = None

    async def jobs_by_status(self) -> dict[str, int]:
        return self.jobs

    async def waiting(self) -> list[Waiting]:
        return self.tasks

    async def schedules(self, now: datetime, grace: timedelta) -> ScheduleCounts:
        self.grace = grace
        return ScheduleCounts(enabled=2, paused=1, overdue=1)


class FakeDepths:
    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths
        self.asked: list[str] = []

    async def __call__(self, queues: Iterable[str]) -> dict[str, int]:
        self.asked = list(queues)
        return {queue: self.depths[queue] for queue in self.asked if queue in self.depths}


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_one_sample_sets_every_gauge() -> None:
    metrics, stats = Metrics(), FakeStats()
    depths = FakeDepths({NAMES.task_queue("simulate"): 7, NAMES.dead_queue: 4})
    queues = {"simulate", "optimise"}
    sampler = Sampler(stats, depths, metrics.operator, NAMES, lambda: queues, Clock())

    await sampler.sample()

    assert value(metrics, "segue_jobs", status="running") == 3
    assert value(metrics, "segue_jobs", status="succeeded") == 40
    assert value(metrics, "segue_jobs", status="timed_out") == 0, "absent statuses are 0"
    assert value(metrics, "segue_task_queue_depth", queue="simulate") == 7
    assert value(metrics, "segue_task_queue_depth", queue="optimise") == 0
    assert value(metrics, "segue_tasks_waiting", queue="simulate") == 2
    assert value(metrics, "segue_task_queue_oldest_age_seconds", queue="simulate") == 300
    assert value(metrics, "segue_task_queue_oldest_age_seconds", queue="optimise") == 0
    assert value(metrics, "segue_dead_letter_queue_depth") == 4
    assert value(metrics, "segue_schedules", state="enabled") == 2
    assert value(metrics, "segue_schedules", state="paused") == 1
    assert value(metrics, "segue_schedules_overdue") == 1
    assert depths.asked[-1] == NAMES.dead_queue


async def test_a_queue_no_longer_in_use_loses_its_series() -> None:
    metrics, stats = Metrics(), FakeStats()
    queues = {"simulate", "optimise"}
    sampler = Sampler(stats, FakeDepths({}), metrics.operator, NAMES, lambda: queues, Clock())
    await sampler.sample()

    queues.discard("optimise")
    await sampler.sample()

    assert value(metrics, "segue_task_queue_depth", queue="optimise") is None
    assert value(metrics, "segue_task_queue_depth", queue="simulate") == 0
