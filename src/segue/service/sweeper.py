"""Fires due timers: retry backoffs and dispatch, heartbeat, step and job timeouts.

Deadlines live in the database (``jobs.wake_at``), so they survive restarts;
due jobs are claimed with ``FOR UPDATE SKIP LOCKED``, so replicas share the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from segue.service.applier import Applier

SWEEP_BATCH = 100


async def run_sweeper(
    applier: Applier,
    interval_s: float,
    before_sweep: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Sweep forever: drain due jobs in batches, then sleep ``interval_s``.

    ``before_sweep`` runs first each time (the events horizon asks the broker
    how many events wait).
    """
    log = structlog.get_logger("segue.sweeper")
    while True:
        try:
            if before_sweep is not None:
                await before_sweep()
            while (due := await applier.sweep(SWEEP_BATCH)) == SWEEP_BATCH:
                log.info("timers_fired", jobs=due)
            if due:
                log.info("timers_fired", jobs=due)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("sweep_failed", error=str(exc))
        await asyncio.sleep(interval_s)
