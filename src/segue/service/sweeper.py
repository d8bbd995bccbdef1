"""Fires due timers: retry backoffs and dispatch, heartbeat, step and job timeouts.

Deadlines live in the database (``jobs.wake_at``), so they survive restarts;
due jobs are claimed with ``FOR UPDATE SKIP LOCKED``, so replicas share the work.
"""

from __future__ import annotations

import asyncio

import structlog

from segue.service.applier import Applier

SWEEP_BATCH = 100


async def run_sweeper(applier: Applier, interval_s: float) -> None:
    """Sweep forever: drain due jobs in batches, then sleep ``interval_s``."""
    log = structlog.get_logger("segue.sweeper")
    while True:
        try:
            while (due := await applier.sweep(SWEEP_BATCH)) == SWEEP_BATCH:
                log.info("timers_fired", jobs=due)
            if due:
                log.info("timers_fired", jobs=due)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("sweep_failed", error=str(exc))
        await asyncio.sleep(interval_s)
