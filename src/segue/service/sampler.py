"""Refreshes the gauges that need a query: jobs by status, tasks waiting per worker
queue (broker and database), the dead-letter queue, schedules.

Runs every few seconds in each replica, off the message path. Every replica
reports the same installation-wide values, so dashboards take ``max`` over
replicas for these gauges (and ``sum`` for the counters, which are per replica).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from segue.protocol.names import Names
from segue.service.operator_metrics import OperatorMetrics
from segue.store.stats import ScheduleCounts, Waiting

OVERDUE_GRACE = timedelta(minutes=1)
"""An enabled schedule due for longer than this has not been fired: it is overdue."""


class StatsPort(Protocol):
    """The counts behind the gauges (see :class:`segue.store.stats.Stats`)."""

    async def jobs_by_status(self) -> dict[str, int]:
        """Jobs stored per status."""
        ...

    async def waiting(self) -> list[Waiting]:
        """Tasks dispatched and not started, per worker queue."""
        ...

    async def schedules(self, now: datetime, grace: timedelta) -> ScheduleCounts:
        """Schedules by state."""
        ...


Depths = Callable[[Iterable[str]], Awaitable[dict[str, int]]]
"""Ready messages per broker queue (see :class:`segue.broker.depths.QueueDepths`)."""


class Sampler:
    """Sets the operator's gauges from the database and the broker."""

    def __init__(
        self,
        stats: StatsPort,
        depths: Depths,
        metrics: OperatorMetrics,
        names: Names,
        step_queues: Callable[[], Iterable[str]],
        clock: Callable[[], datetime],
    ) -> None:
        self._stats = stats
        self._depths = depths
        self._metrics = metrics
        self._names = names
        self._step_queues = step_queues
        self._clock = clock
        self._log = structlog.get_logger("segue.sampler")

    async def sample(self) -> None:
        """Query everything once and set the gauges."""
        now = self._clock()
        self._metrics.set_jobs(await self._stats.jobs_by_status())
        waiting = await self._stats.waiting()
        queues = sorted(set(self._step_queues()) | {w.queue for w in waiting})
        broker_names = {self._names.task_queue(queue): queue for queue in queues}
        found = await self._depths([*broker_names, self._names.dead_queue])
        self._metrics.dead_letter_depth.set(found.pop(self._names.dead_queue, 0))
        depths = {broker_names[name]: depth for name, depth in found.items()}
        self._metrics.set_queues(
            {queue: depths.get(queue, 0) for queue in queues},
            {w.queue: w.tasks for w in waiting},
            {w.queue: max(0.0, (now - w.oldest).total_seconds()) for w in waiting},
        )
        counts = await self._stats.schedules(now, OVERDUE_GRACE)
        self._metrics.set_schedules(counts.enabled, counts.paused, counts.overdue)

    async def run(self, interval_s: float) -> None:
        """Sample every ``interval_s``, forever (a failed round is logged and skipped)."""
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("metrics_sample_failed", error=str(exc))
            await asyncio.sleep(interval_s)
