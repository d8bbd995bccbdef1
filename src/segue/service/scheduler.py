"""Fires recurring jobs: every few seconds, the schedules that are due submit their job.

One transaction per batch of due schedules: lock them (``FOR UPDATE SKIP
LOCKED``, so each replica takes others than the rest), submit each one's job
through the :class:`~segue.service.applier.Applier` exactly as a client's
submission is applied (same checks, same history, same outbox), and advance
each schedule. Either all of it commits or none of it does, so a schedule
advances if and only if its job is stored; job ids derived from the due time
(:mod:`segue.service.recurrence`) make a retry of the same due time a
duplicate, never a second job. Several replicas therefore fire each due time once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from segue.service.applier import Applier, Change
from segue.service.handlers import fresh_secret
from segue.service.recurrence import FiredOutcome, file_schedules, fired, outcome, submission
from segue.store.repository import Store
from segue.store.schedules import ScheduleStore, ScheduleTransaction
from segue.workflows.loader import Catalog

SCHEDULE_BATCH = 50
"""Most schedules fired in one transaction."""


class Scheduler:
    """Submits the jobs of due schedules (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        applier: Applier,
        catalog: Catalog,
        clock: Callable[[], datetime],
        on_fired: Callable[[FiredOutcome], None] | None = None,
        new_secret: Callable[[], str | None] = fresh_secret,
    ) -> None:
        self._store = store
        self._applier = applier
        self._catalog = catalog
        self._clock = clock
        self._on_fired = on_fired
        self._new_secret = new_secret
        self._log = structlog.get_logger("segue.scheduler")

    @property
    def catalog(self) -> Catalog:
        """The workflows it submits with (the latest file loaded)."""
        return self._catalog

    def use_catalog(self, catalog: Catalog) -> None:
        """Submit with the workflows of ``catalog`` from now on (a reloaded file)."""
        self._catalog = catalog

    async def store_file_schedules(self) -> None:
        """Store the schedules of the workflow file (only those new or changed are
        written; those removed from the file are deleted)."""
        rows = file_schedules(self._catalog.schedules, self._clock())
        result = await ScheduleStore(self._store).sync_file(rows)
        if result.stored or result.removed:
            self._log.info("schedules_stored", stored=result.stored, removed=result.removed)

    async def fire_due(self, limit: int = SCHEDULE_BATCH) -> int:
        """Fire up to ``limit`` due schedules in one transaction; returns how many."""
        now = self._clock()
        async with self._store.transaction() as tx:
            schedules = ScheduleTransaction(tx.connection)
            due = await schedules.due(now, limit)
            if not due:
                return 0
            submitted = [submission(row, self._catalog, self._new_secret()) for row in due]
            changes = [Change(event.job_id, event) for event in submitted]
            staged = await self._applier.apply_within(tx, changes, now)
            results = [
                fired(row, change.job_id, applied, now)
                for row, change, applied in zip(due, changes, staged.applied, strict=True)
            ]
            await schedules.record_fired(results)
        await self._applier.send(staged)
        for row, result, applied in zip(due, results, staged.applied, strict=True):
            verdict = outcome(applied)
            if self._on_fired is not None:
                self._on_fired(verdict)
            log = self._log.warning if result.error else self._log.info
            log(
                "schedule_fired",
                schedule=row.name,
                outcome=verdict.value,
                due_at=row.next_due_at.isoformat(),
                job_id=None if result.job_id is None else str(result.job_id),
                next_due_at=None if result.next_due_at is None else result.next_due_at.isoformat(),
                error=result.error,
            )
        return len(due)

    async def run(self, interval_s: float) -> None:
        """Store the file's schedules, then fire due schedules every ``interval_s``, forever."""
        while True:
            try:
                await self.store_file_schedules()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("schedules_store_failed", error=str(exc))
                await asyncio.sleep(interval_s)
        while True:
            try:
                while await self.fire_due() == SCHEDULE_BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("schedules_fire_failed", error=str(exc))
            await asyncio.sleep(interval_s)
