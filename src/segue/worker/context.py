"""What a step handler gets: the task's data, progress reporting and cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import structlog
from structlog.typing import FilteringBoundLogger

from segue.protocol.messages import JsonObject, StepTask
from segue.worker.progress import ProgressReport, normalise_progress


class StepContext:
    """One attempt at one step, as seen by its handler.

    Every method is safe to call from the handler's own thread (plain ``def``
    handlers run in one) as well as from the event loop.
    """

    def __init__(
        self,
        task: StepTask,
        report_progress: Callable[[ProgressReport], None],
        worker_id: str = "",
    ) -> None:
        self._task = task
        self._report_progress = report_progress
        self._cancelled = threading.Event()
        self._worker_id = worker_id
        self._log: FilteringBoundLogger | None = None

    @property
    def log(self) -> FilteringBoundLogger:
        """A structlog logger bound to this attempt's job, workflow, step and attempt.

        It is the application's logger: it follows the application's structlog
        configuration (structlog's defaults if there is none).
        """
        if self._log is None:
            task = self._task
            self._log = structlog.get_logger("segue.step").bind(
                job_id=str(task.job_id),
                workflow=task.workflow,
                step=task.step,
                attempt=task.attempt,
                worker_id=self._worker_id,
                **({} if task.item_index is None else {"item_index": task.item_index}),
            )
        return self._log

    @property
    def task(self) -> StepTask:
        """The task message as received."""
        return self._task

    @property
    def job_id(self) -> UUID:
        """The job this step belongs to."""
        return self._task.job_id

    @property
    def attempt_id(self) -> UUID:
        """This attempt's id (what the orchestrator fences events by)."""
        return self._task.attempt_id

    @property
    def attempt(self) -> int:
        """Which attempt at this step this is, counting from 1."""
        return self._task.attempt

    @property
    def step(self) -> str:
        """The step's name in its workflow."""
        return self._task.step

    @property
    def workflow(self) -> str:
        """The workflow's name."""
        return self._task.workflow

    @property
    def params(self) -> JsonObject:
        """The job's parameters, with the workflow's defaults applied."""
        return self._task.params

    @property
    def inputs(self) -> JsonObject:
        """What the step receives: its ``input`` values by name, or (without ``input``
        in the workflow) the outputs of earlier steps by step name."""
        return self._task.inputs

    @property
    def item(self) -> Any:
        """The item of a map step this attempt runs (None for other steps)."""
        return self._task.item

    @property
    def item_index(self) -> int | None:
        """The index of :attr:`item` in the mapped list (None for other steps)."""
        return self._task.item_index

    @property
    def iteration(self) -> int:
        """Which run of a repeated step this is, from 1 (:attr:`attempt` restarts at 1)."""
        return self._task.iteration

    @property
    def cancelled(self) -> bool:
        """True once the orchestrator cancelled this attempt, or the worker is shutting down.

        A blocking handler should check it now and then and return early; an
        async handler is cancelled (``asyncio.CancelledError``) in addition.
        """
        return self._cancelled.is_set()

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the step is (0.0 to 1.0, clamped) and what it is doing.

        Never blocks: reports are coalesced and sent in the background, so
        calling this in a tight loop is fine; the latest report always arrives.
        """
        self._report_progress(normalise_progress(fraction, message))

    def mark_cancelled(self) -> None:
        """Set :attr:`cancelled` (called by the worker, not by handlers)."""
        self._cancelled.set()
