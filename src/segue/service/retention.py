"""Retention: finished jobs, cancels of jobs that were never submitted and
quarantined outbox rows nobody released are deleted once they are older than the
configured age, so the database stops growing.

A job's attempts and history go with it (``ON DELETE CASCADE``); jobs that are
still queued or running are never touched. Outbox rows that are not quarantined
are deleted as soon as they are published, so only quarantined ones can linger.
Deletes go in bounded batches, one statement each that skips rows another
transaction holds, with a pause between batches: a large backlog (say, after an
upgrade) never holds many locks or the database for long, and several replicas
can prune at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

PRUNE_BATCH = 500
"""Most rows one statement deletes."""
PRUNE_PAUSE_S = 0.2
"""Pause between two batches, so other work gets the database in between."""

Purge = Callable[[datetime, int], Awaitable[int]]
Count = Callable[[float], None]


class PrunableStore(Protocol):
    """Deletes old rows in batches (see :class:`segue.store.repository.Store`)."""

    async def purge_finished_jobs(self, updated_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` finished jobs not updated since then; how many were."""
        ...

    async def purge_pending_cancels(self, created_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` cancels of unsubmitted jobs kept since then; how many were."""
        ...

    async def purge_quarantined_outbox(self, quarantined_before: datetime, limit: int = 500) -> int:
        """Delete up to ``limit`` outbox rows quarantined since then; how many were."""
        ...


def _uncounted(_amount: float) -> None:
    return None


@dataclass(frozen=True)
class Retention:
    """What to prune and how: rows older than ``keep`` (zero: keep everything)."""

    store: PrunableStore
    keep: timedelta
    clock: Callable[[], datetime]
    count_jobs: Count = _uncounted
    count_cancels: Count = _uncounted
    count_outbox: Count = _uncounted
    batch: int = PRUNE_BATCH
    pause_s: float = PRUNE_PAUSE_S

    async def prune(self) -> tuple[int, int]:
        """Delete every finished job, pending cancel and quarantined outbox row past
        retention, batch by batch.

        Returns how many jobs and how many cancels were deleted.
        """
        cutoff = self.clock() - self.keep
        jobs = await self._drain(
            "jobs_pruned", self.store.purge_finished_jobs, self.count_jobs, cutoff
        )
        cancels = await self._drain(
            "pending_cancels_pruned", self.store.purge_pending_cancels, self.count_cancels, cutoff
        )
        await self._drain(
            "quarantined_outbox_pruned",
            self.store.purge_quarantined_outbox,
            self.count_outbox,
            cutoff,
        )
        return jobs, cancels

    async def _drain(self, event: str, purge: Purge, count: Count, cutoff: datetime) -> int:
        """Run ``purge`` until a batch comes back short; each batch counted and logged."""
        log = structlog.get_logger("segue.retention")
        total = 0
        while True:
            deleted = await purge(cutoff, self.batch)
            total += deleted
            if deleted:
                count(deleted)
                log.info(event, count=deleted, cutoff=cutoff.isoformat())
            if deleted < self.batch:
                return total
            await asyncio.sleep(self.pause_s)


async def run_retention(retention: Retention, interval_s: float) -> None:
    """Prune now and then every ``interval_s``, forever; return at once if nothing
    is ever to be deleted (``keep`` zero)."""
    if retention.keep <= timedelta(0):
        return
    log = structlog.get_logger("segue.retention")
    while True:
        try:
            await retention.prune()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("prune_failed", error=str(exc))
        await asyncio.sleep(interval_s)
