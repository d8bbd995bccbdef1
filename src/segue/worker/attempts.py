"""The attempts a worker is running: starting, cancelling and abandoning them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import structlog

from segue.logs import library_logger
from segue.protocol.messages import CancelAttempt, StepStarted, StepTask
from segue.worker.attempt import Attempt, AttemptSettings
from segue.worker.handler import StepHandler
from segue.worker.reporter import EventSink


class RunningAttempts:
    """Every attempt between its ``started`` report and its result, by attempt id."""

    def __init__(self, reporter: EventSink, settings: AttemptSettings) -> None:
        self._reporter = reporter
        self._settings = settings
        self._attempts: dict[UUID, Attempt] = {}
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self._log = library_logger("segue.worker")

    def __len__(self) -> int:
        return len(self._attempts)

    async def start(
        self, task: StepTask, handler: StepHandler, redelivered: bool
    ) -> Attempt | None:
        """Report ``task`` started; None if it already runs here.

        Raises if the ``started`` report was not confirmed: the caller then
        requeues the task, and nothing has started.
        """
        if task.attempt_id in self._attempts:
            return None
        attempt = Attempt(task, handler, self._reporter, self._settings)
        self._attempts[task.attempt_id] = attempt
        try:
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
            self.discard(attempt)
            raise
        return attempt

    def launch(self, attempt: Attempt, on_done: Callable[[], None]) -> None:
        """Run a started attempt in the background; ``on_done`` is called when it ends."""
        attempt_id = attempt.task.attempt_id
        self._tasks[attempt_id] = asyncio.create_task(
            self._run(attempt, on_done), name=f"segue-attempt-{attempt_id}"
        )

    def discard(self, attempt: Attempt) -> None:
        """Forget an attempt that was not launched after all."""
        self._attempts.pop(attempt.task.attempt_id, None)

    def cancel(self, command: CancelAttempt) -> None:
        """Apply a control message: cancel the attempt it names, if it runs here.

        Every worker hears every cancel, so one for an attempt running
        elsewhere (or already finished) is the normal case, logged at debug.
        """
        attempt = self._attempts.get(command.attempt_id)
        if attempt is None:
            self._log.debug("cancel_for_other_attempt", attempt_id=str(command.attempt_id))
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
                on_done()
