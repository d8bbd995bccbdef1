"""The Segue worker of the benchmark: one handler that returns at once.

Run as ``segue worker run bench.workers:instant_worker`` with the repository
root on ``PYTHONPATH``. ``BENCH_WORKER_CONCURRENCY`` sets how many attempts
run at once (default 64, the baseline worker's prefetch).
"""

from __future__ import annotations

import os

from segue.worker import StepContext, Worker, step_handler

INSTANT_QUEUE = "bench_instant"
"""The step queue of every instant benchmark step (``bench/workflows.json``)."""


@step_handler(INSTANT_QUEUE)
async def instant(ctx: StepContext) -> dict[str, object]:
    """Return at once, with no progress reports: only the orchestration is measured."""
    return {}


def instant_worker() -> Worker:
    """The worker factory named on the ``segue worker run`` command line."""
    concurrency = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "64"))
    return Worker(handlers=[instant], concurrency=concurrency, shutdown_grace_s=5.0)
