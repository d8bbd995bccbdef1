"""Counts for the operator's gauges, read now and then (never per message).

- Jobs by status: one ``GROUP BY`` over ``jobs`` (an index-only scan of
  ``ix_jobs_status_updated_at``); its cost grows with the jobs retained.
- Tasks waiting per worker queue: attempts dispatched and not started, of
  unfinished jobs only (found through the status index, then each job's
  attempts), so its cost follows the work in flight, not the history kept.
  A step's queue comes from the definition its job pinned.
- Schedules: enabled, paused, and enabled ones overdue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from segue.store.mapping import aware
from segue.store.repository import Store

WAITING_SQL = """
SELECT j.workflow_hash, a.step, count(*) AS tasks, min(a.dispatched_at) AS oldest
FROM jobs AS j JOIN step_attempts AS a ON a.job_id = j.job_id
WHERE j.status IN ('queued', 'running') AND a.status = 'dispatched'
GROUP BY j.workflow_hash, a.step
"""

SCHEDULES_SQL = """
SELECT count(*) FILTER (WHERE enabled) AS enabled,
    count(*) FILTER (WHERE NOT enabled) AS paused,
    count(*) FILTER (WHERE enabled AND next_due_at < $1) AS overdue
FROM schedules
"""


@dataclass(frozen=True, slots=True)
class Waiting:
    """Tasks of one worker queue dispatched and not started: how many, and since when."""

    queue: str
    tasks: int
    oldest: datetime


@dataclass(frozen=True, slots=True)
class ScheduleCounts:
    """How many schedules are enabled, paused, and enabled but overdue."""

    enabled: int
    paused: int
    overdue: int


class Stats:
    """Reads the counts behind the operator's gauges."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def jobs_by_status(self) -> dict[str, int]:
        """How many jobs are stored with each status (absent statuses: none)."""
        async with self._store.transaction() as tx:
            rows = await tx.connection.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
        return {row["status"]: int(row["count"]) for row in rows}

    async def waiting(self) -> list[Waiting]:
        """Tasks dispatched and not started, per worker queue (steps without a queue,
        such as parallel ones, are left out)."""
        async with self._store.transaction() as tx:
            rows = await tx.connection.fetch(WAITING_SQL)
            hashes = {row["workflow_hash"] for row in rows}
            workflows = await self._store.definitions.get_many(tx.connection, hashes)
        by_queue: dict[str, Waiting] = {}
        for row in rows:
            workflow = workflows[row["workflow_hash"]]
            try:
                queue = workflow.step(row["step"]).queue
            except KeyError:
                continue
            if queue is None:
                continue
            seen = by_queue.get(queue)
            tasks = int(row["tasks"]) + (0 if seen is None else seen.tasks)
            oldest = row["oldest"] if seen is None else min(seen.oldest, row["oldest"])
            by_queue[queue] = Waiting(queue, tasks, oldest)
        return sorted(by_queue.values(), key=lambda waiting: waiting.queue)

    async def schedules(self, now: datetime, grace: timedelta) -> ScheduleCounts:
        """Schedules by state; overdue: enabled and due before ``now - grace``."""
        async with self._store.transaction() as tx:
            row = await tx.connection.fetchrow(SCHEDULES_SQL, aware(now - grace, "now"))
        assert row is not None
        return ScheduleCounts(int(row["enabled"]), int(row["paused"]), int(row["overdue"]))
