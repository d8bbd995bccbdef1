"""While ``segue submit --wait`` follows a job: ask now and then where its waiting
step stands in its queue, and say so (a query every few seconds, only while the
job's current step has not reported progress)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol, Self

from segue.errors import SegueError
from segue.protocol.messages import JobView, QueueEstimate

QUEUE_POLL_S = 2.0
"""How often a waiting job is asked about."""


class JobQuery(Protocol):
    """What the watch needs of a job handle (see :class:`segue.client.JobHandle`)."""

    async def get(
        self, include_history: bool = True, include_queue: bool = True
    ) -> JobView | None: ...


class QueueWatch:
    """Tells ``show`` where the job's waiting step stands, every ``interval_s``.

    Use it as ``async with QueueWatch(job, show) as watch:``, which runs
    :meth:`run` in the background until the block ends. It asks while the
    job's current step has reported no progress
    (:meth:`step_entered` / :meth:`step_progressed` say which), and ends when
    the job has ended. A query that gets no answer is simply asked again later.
    """

    def __init__(
        self,
        job: JobQuery,
        show: Callable[[QueueEstimate], None],
        interval_s: float = QUEUE_POLL_S,
    ) -> None:
        self._job = job
        self._show = show
        self._interval_s = interval_s
        self._waiting = asyncio.Event()
        self._waiting.set()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        """Start watching in the background."""
        self._task = asyncio.create_task(self.run(), name="segue-queue-watch")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def step_entered(self) -> None:
        """The job moved to a step (or started it): it may wait in a queue."""
        self._waiting.set()

    def step_progressed(self) -> None:
        """The current step reported progress: it does not wait any more."""
        self._waiting.clear()

    async def run(self) -> None:
        """Ask and show until the job ends (or the task is cancelled)."""
        while True:
            await self._waiting.wait()
            try:
                view = await self._job.get(include_history=False, include_queue=True)
            except SegueError:
                view = None
            if view is not None and view.queue is not None and self._waiting.is_set():
                self._show(view.queue)
            if view is not None and view.status.is_terminal:
                return
            await asyncio.sleep(self._interval_s)
