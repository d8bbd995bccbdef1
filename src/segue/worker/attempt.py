"""Running one step attempt: the handler, its heartbeats and progress, its result."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from segue.logs import library_logger
from segue.protocol import kinds
from segue.protocol.messages import (
    ErrorInfo,
    JsonObject,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepSucceeded,
    StepTask,
)
from segue.worker.context import StepContext
from segue.worker.errors import InvalidOutputError
from segue.worker.handler import StepHandler, validate_output
from segue.worker.progress import ProgressReport, ProgressSender
from segue.worker.reporter import EventSink
from segue.worker.threads import run_in_thread

DEFAULT_HEARTBEAT_INTERVAL_S = 10.0
MIN_HEARTBEAT_INTERVAL_S = 1.0


def heartbeat_interval(task_heartbeat_s: float | None, override_s: float | None) -> float:
    """Seconds between heartbeats: the worker's setting, else a third of the step's.

    A third of the step's ``heartbeat_s`` lets two heartbeats go missing before
    the orchestrator declares the worker lost; never below one second.
    """
    if override_s is not None:
        return override_s
    if task_heartbeat_s is None:
        return DEFAULT_HEARTBEAT_INTERVAL_S
    return max(MIN_HEARTBEAT_INTERVAL_S, task_heartbeat_s / 3)


def error_info(exc: BaseException, step: str) -> ErrorInfo:
    """What a handler's exception is reported as: its type, message and traceback tail.

    :class:`ErrorInfo` bounds each text (the traceback keeps its end), so a long
    one is cut here, before it is sent, and says how much was left out.
    """
    return ErrorInfo(
        kind=type(exc).__name__,
        message=str(exc) or repr(exc),
        step=step,
        details="".join(traceback.format_exception(exc)),
    )


@dataclass(frozen=True)
class Succeeded:
    """The handler returned a valid output."""

    output: JsonObject


@dataclass(frozen=True)
class Failed:
    """The handler raised, or returned something that is not an output."""

    error: ErrorInfo
    retryable: bool = True


@dataclass(frozen=True)
class Cancelled:
    """The orchestrator cancelled the attempt; nothing more is reported."""

    reason: str


Result = Succeeded | Failed | Cancelled


DEFAULT_PROGRESS_INTERVAL_S = 1.0
"""At most one progress report per attempt per second reaches the orchestrator."""


@dataclass(frozen=True)
class AttemptSettings:
    """How attempts of one worker run.

    ``progress_interval_s``: at most one progress report per attempt per
    interval is sent (the latest; see :mod:`segue.worker.progress`).
    """

    worker_id: str
    heartbeat_interval_s: float | None = None
    progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S


class Attempt:
    """One attempt at a step: runs the handler and reports what happens to it."""

    def __init__(
        self,
        task: StepTask,
        handler: StepHandler,
        reporter: EventSink,
        settings: AttemptSettings,
    ) -> None:
        self.task = task
        self.run_id = uuid4().hex
        """Names this start of the attempt (see ``StepStarted.run_id``)."""
        self._handler = handler
        self._reporter = reporter
        self._settings = settings
        self._progress = ProgressSender(
            self._send_progress, settings.progress_interval_s, asyncio.get_running_loop()
        )
        self.ctx = StepContext(task, self._progress.offer, settings.worker_id)
        self._cancel_reason: str | None = None
        self._handler_task: asyncio.Task[object] | None = None
        self._log = library_logger("segue.worker").bind(
            job_id=str(task.job_id), step=task.step, attempt=task.attempt, queue=handler.queue
        )

    def cancel(self, reason: str) -> None:
        """Stop the handler: cancel an async one, set ``ctx.cancelled`` for both kinds."""
        if self._cancel_reason is not None:
            return
        self._cancel_reason = reason
        self.ctx.mark_cancelled()
        if self._handler.is_async and self._handler_task is not None:
            self._handler_task.cancel()

    async def run(self) -> None:
        """Run the handler with heartbeats, then report its result once (heartbeats
        go on until the broker confirmed it).

        A progress report still pending when the result is ready is dropped:
        the result supersedes it. If this coroutine is cancelled (shutdown past
        its grace period), the handler is cancelled too and nothing is
        reported: the orchestrator's heartbeat timeout hands the step to
        another worker.
        """
        started = time.monotonic()
        heartbeats = Heartbeats(
            heartbeat_interval(self.task.heartbeat_s, self._settings.heartbeat_interval_s),
            self._heartbeat,
        )
        self._progress.start()
        try:
            result = await self._execute()
        except asyncio.CancelledError:
            self.ctx.mark_cancelled()
            await heartbeats.stop()
            await self._progress.abort()
            self._log.warning("step_abandoned", duration_s=_since(started))
            raise
        if isinstance(result, Cancelled):
            await heartbeats.stop()
            await self._progress.abort()
            await self._report(result, _since(started))
            return
        # Heartbeats go on until the result is confirmed: a result retried while
        # the broker is away must not leave the attempt looking lost meanwhile.
        try:
            await self._progress.close()
            await self._report(result, _since(started))
        finally:
            await heartbeats.stop()

    async def _execute(self) -> Result:
        if self._cancel_reason is not None:
            return Cancelled(self._cancel_reason)
        self._handler_task = asyncio.create_task(
            self._invoke(), name=f"segue-step-{self.task.step}"
        )
        try:
            value = await self._handler_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._cancel_reason is not None and (current is None or not current.cancelling()):
                return Cancelled(self._cancel_reason)
            raise
        except Exception as exc:
            if self._cancel_reason is not None:
                return Cancelled(self._cancel_reason)
            return Failed(error_info(exc, self.task.step))
        if self._cancel_reason is not None:
            return Cancelled(self._cancel_reason)
        try:
            return Succeeded(validate_output(value))
        except InvalidOutputError as exc:
            error = ErrorInfo(kind=kinds.INVALID_OUTPUT, message=str(exc), step=self.task.step)
            return Failed(error, retryable=False)

    async def _invoke(self) -> object:
        if self._handler.is_async:
            return await self._handler.fn(self.ctx)
        return await run_in_thread(lambda: self._handler.fn(self.ctx), f"segue-{self.task.step}")

    async def _report(self, result: Result, duration_s: float) -> None:
        match result:
            case Succeeded(output):
                await self._reporter.send(StepSucceeded(**self._event_fields(), output=output))
                self._log.info("step_succeeded", duration_s=duration_s)
            case Failed(error, retryable):
                await self._reporter.send(
                    StepFailed(**self._event_fields(), error=error, retryable=retryable)
                )
                self._log.warning(
                    "step_failed",
                    duration_s=duration_s,
                    error_kind=error.kind,
                    error=error.message,
                    retryable=retryable,
                )
            case Cancelled(reason):
                self._log.info("step_cancelled", duration_s=duration_s, reason=reason)

    async def _heartbeat(self) -> None:
        if self._cancel_reason is None:
            await self._reporter.send_once(StepHeartbeat(**self._event_fields()))

    async def _send_progress(self, report: ProgressReport) -> None:
        await self._reporter.send(
            StepProgressed(**self._event_fields(), fraction=report.fraction, message=report.message)
        )

    def _event_fields(self) -> dict[str, Any]:
        """What every report about the attempt carries: its ids, when it was sent, and
        the task's token (without which the orchestrator refuses the report)."""
        return {
            "job_id": self.task.job_id,
            "attempt_id": self.task.attempt_id,
            "worker_id": self._settings.worker_id,
            "sent_at": datetime.now(UTC),
            "token": self.task.token,
        }


class Heartbeats:
    """Calls ``beat`` every ``interval_s`` from a timer, one call at a time.

    A timer rather than a sleeping task: most steps of a busy worker end long
    before their first heartbeat, and then only the timer is cancelled.
    """

    def __init__(self, interval_s: float, beat: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._interval_s = interval_s
        self._beat = beat
        self._loop = asyncio.get_running_loop()
        self._beating: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(interval_s, self._fire)

    def _fire(self) -> None:
        self._timer = self._loop.call_later(self._interval_s, self._fire)
        if self._beating is None or self._beating.done():  # skip a beat while one is stuck
            self._beating = self._loop.create_task(self._beat(), name="segue-heartbeat")

    async def stop(self) -> None:
        """Stop the timer and any heartbeat being sent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
