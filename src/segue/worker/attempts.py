"""The attempts a worker is running: starting, cancelling and abandoning them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import structlog

from segue.protocol.messages import CancelAttempt, StepStarted, StepTask
from segue.worker.attempt import Attempt, AttemptSettings
from segue.worker.control import ControlListener
from segue.worker.handler import StepHandler
from segue.worker.reporter import EventSink


class RunningAttempts:
    """Every attempt between its ``started`` report and its result, by attempt id."""

    def __init__(
        self, reporter: EventSink, control: ControlListener, settings: AttemptSettings
    ) -> None:
        self._reporter = reporter
        self._control = control
        self._settings = settings
        self._attempts: dict[UUID, Attempt] = {}
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self._log = structlog.get_logger("segue.worker")

    def __len__(self) -> int:
        return len(self._attempts)

    async def start(
        self, task: StepTask, handler: StepHandler, redelivered: bool
    ) -> Attempt | None:
        """Watch for cancels of ``task`` and report it started; None if it already runs here.

        Raises if the ``started`` report was not confirmed: the caller then
        requeues the task, and nothing has started.
        """
        if task.attempt_id in self._attempts:
            return None
        attempt = Attempt(task, handler, self._reporter, self._settings)
        self._attempts[task.attempt_id] = attempt
        try:
            await self._control.watch(task.attempt_id)
            await self._reporter.send_or_raise(
                StepStarted(
                    job_id=task.job_id,
                    attempt_id=task.attempt_id,
                    worker_id=self._settings.worker_id,
                    sent_at=datetime.now(UTC),
                    redelivered=redelivered,
                )
            )
        except BaseException:
            await self.discard(attempt)
            raise
        return attempt

    def launch(self, attempt: Attempt, on_done: Callable[[], None]) -> None:
        """Run a started attempt in the background; ``on_done`` is called when it ends."""
        attempt_id = attempt.task.attempt_id
        self._tasks[attempt_id] = asyncio.create_task(
            self._run(attempt, on_done), name=f"segue-attempt-{attempt_id}"
        )

    async def discard(self, attempt: Attempt) -> None:
        """Forget an attempt that was not launched after all."""
        self._attempts.pop(attempt.task.attempt_id, None)
        await self._control.unwatch(attempt.task.attempt_id)

    def cancel(self, command: CancelAttempt) -> None:
        """Apply a control message: cancel the attempt it names, if it runs here."""
        attempt = self._attempts.get(command.attempt_id)
        if attempt is None:
            self._log.info("cancel_for_unknown_attempt", attempt_id=str(command.attempt_id))
            return
        self._log.info(
            "step_cancel_requested",
            job_id=str(command.job_id),
            step=attempt.task.step,
            attempt=attempt.task.attempt,
            reason=command.reason,
        )
        attempt.cancel(command.reason)

    def abandon_all(self) -> None:
        """Cancel every running attempt without reporting it (shutdown past its grace)."""
        for task in self._tasks.values():
            task.cancel()

    async def _run(self, attempt: Attempt, on_done: Callable[[], None]) -> None:
        task = attempt.task
        with structlog.contextvars.bound_contextvars(
            job_id=str(task.job_id), step=task.step, attempt=task.attempt
        ):
            try:
                await attempt.run()
            except Exception:  # a bug in the worker itself: log it, free the slot
                self._log.exception("attempt_crashed")
            finally:
                self._attempts.pop(task.attempt_id, None)
                self._tasks.pop(task.attempt_id, None)
                await self._control.unwatch(task.attempt_id)
                on_done()
