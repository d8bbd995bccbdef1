"""A demo worker for the workflows of ``config/workflow_config.json``.

Run it with ``segue worker run segue.demo:worker``.
"""

from segue.demo.handlers import ALL_HANDLERS, DemoFailure
from segue.worker import StepHandler, Worker


def demo_handlers() -> list[StepHandler]:
    """Every demo handler: prepare, optimise, simulate, report and quick_check."""
    return list(ALL_HANDLERS)


def worker(concurrency: int = 1) -> Worker:
    """A worker serving every demo step queue (connection settings from ``SEGUE_*``)."""
    return Worker(handlers=demo_handlers(), concurrency=concurrency)


__all__ = ["DemoFailure", "demo_handlers", "worker"]
