"""A demo worker for the workflows of ``config/workflow_config.json``.

Run it with ``segue worker run segue.demo:worker``; ``SEGUE_WORKER_CONCURRENCY``
sets how many steps it runs at once (default 1).
"""

import os

from segue.demo.handlers import ALL_HANDLERS, DemoFailure
from segue.errors import ConfigurationError
from segue.worker import StepHandler, Worker

CONCURRENCY_ENV = "SEGUE_WORKER_CONCURRENCY"


def demo_handlers() -> list[StepHandler]:
    """Every demo handler: prepare, optimise, simulate, report and quick_check."""
    return list(ALL_HANDLERS)


def concurrency_from_env() -> int:
    """``SEGUE_WORKER_CONCURRENCY`` as a positive integer (1 when unset)."""
    raw = os.environ.get(CONCURRENCY_ENV, "").strip()
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"{CONCURRENCY_ENV} must be a positive integer, got {raw!r}")
    return value


def worker(concurrency: int | None = None) -> Worker:
    """A worker serving every demo step queue (connection settings from ``SEGUE_*``).

    ``concurrency`` None means ``SEGUE_WORKER_CONCURRENCY``, else 1.
    """
    slots = concurrency_from_env() if concurrency is None else concurrency
    return Worker(handlers=demo_handlers(), concurrency=slots)


__all__ = ["CONCURRENCY_ENV", "DemoFailure", "concurrency_from_env", "demo_handlers", "worker"]
