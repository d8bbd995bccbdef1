"""The attempts a worker is running: starting, cancelling and abandoning them.

Which cancels a worker obeys: every worker hears every cancel, and anyone who
may publish to the control exchange could send one. A cancel naming another
worker (``worker_id``) is not for this one. For an attempt whose task carried
a token, only a cancel carrying the token's digest counts: the orchestrator
that issued the task knows the token, whoever forges a cancel does not. Tasks
without a token (from an older orchestrator) obey any cancel of their attempt,
as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import structlog

from segue.logs import library_logger
from segue.protocol import kinds
from segue.protocol.messages import CancelAttempt, ErrorInfo, StepFailed, StepStarted, StepTask
from segue.protocol.tokens import token_digest
from segue.worker.attempt import Attempt, AttemptSettings
from segue.worker.cancels import RecentCancels
from segue.worker.handler import StepHandler
from segue.worker.reporter import EventSink


@dataclass(frozen=True)
class TaskIds:
    """What identifies the attempt of a task that could not be decoded as a whole."""

    job_id: UUID
    attempt_id: UUID
    token: str | None = None
    step: str | None = None


MAX_TOKEN_CHARS = 64
"""Longest token a report may carry (``WorkerEvent.token``)."""
MAX_TASK_SNIFF_BYTES = 16_000_000
"""Larger undecodable tasks are not searched for their ids (they are only dead-lettered)."""


def task_ids(body: bytes) -> TaskIds | None:
    """The ids in the body of a task that could not be decoded, read leniently; None if
    it names no valid job id and attempt id.

    A token that is not a string of at most 64 characters is left out (the
    report is then refused by an orchestrator that checks tokens: no harm done).
    """
    if len(body) > MAX_TASK_SNIFF_BYTES:
        return None
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        return None
    if not isinstance(raw, dict):
        return None
    job_id, attempt_id = _uuid_of(raw.get("job_id")), _uuid_of(raw.get("attempt_id"))
    if job_id is None or attempt_id is None:
        return None
    token, step = raw.get("token"), raw.get("step")
    return TaskIds(
        job_id,
        attempt_id,
        token if isinstance(token, str) and len(token) <= MAX_TOKEN_CHARS else None,
        step if isinstance(step, str) else None,
    )


def _uuid_of(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


class RunningAttempts:
    """Every attempt between its ``started`` report and its result, by attempt id.

    It also remembers the recent cancels meant for this worker, so that a task
    of an attempt cancelled before it arrived is dropped unrun.
    """

    def __init__(
        self,
        reporter: EventSink,
        settings: AttemptSettings,
        cancels: RecentCancels | None = None,
    ) -> None:
        self._reporter = reporter
        self._settings = settings
        self._attempts: dict[UUID, Attempt] = {}
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self._cancels = cancels if cancels is not None else RecentCancels()
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
                    token=task.token,
                    redelivered=redelivered,
                    run_id=attempt.run_id,
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

    def cancelled_before(self, task: StepTask) -> str | None:
        """The reason of a cancel heard for ``task``'s attempt before it arrived, or None."""
        heard = self._cancels.find(task)
        return None if heard is None else heard.reason

    async def refuse(self, ids: TaskIds, reason: str) -> bool:
        """Report the attempt of an undecodable task failed for good, at once.

        Else the orchestrator would wait for the attempt's dispatch deadline.
        Tried once: the caller dead-letters the task either way. False if the
        report was not confirmed.
        """
        error = ErrorInfo(kind=kinds.INVALID_TASK, message=reason, step=ids.step)
        return await self._reporter.send_once(
            StepFailed(
                job_id=ids.job_id,
                attempt_id=ids.attempt_id,
                worker_id=self._settings.worker_id,
                sent_at=datetime.now(UTC),
                token=ids.token,
                error=error,
                retryable=False,
            )
        )

    def cancel(self, command: CancelAttempt) -> None:
        """Apply a control message: cancel the attempt it names, if it runs here.

        Every worker hears every cancel, so one for an attempt running
        elsewhere (or already finished) is the normal case, logged at debug;
        it is remembered in case the attempt's task arrives later. A cancel
        for another worker, or without the digest of the running attempt's
        token, is ignored (see the module's docstring); so is one that answers
        another start of the attempt (``run_id``), and it is not remembered.
        """
        if command.worker_id is not None and command.worker_id != self._settings.worker_id:
            self._log.debug(
                "cancel_for_other_worker",
                attempt_id=str(command.attempt_id),
                for_worker=command.worker_id,
            )
            return
        attempt = self._attempts.get(command.attempt_id)
        if command.run_id is None:
            self._cancels.remember(command)
        elif attempt is None or attempt.run_id != command.run_id:
            # The answer to a start that is over (its ``started`` was not confirmed,
            # or it ended): it must not stop a later start. Nor is it remembered: a
            # later copy of the task is a new start, which the orchestrator judges anew.
            self._log.debug("cancel_for_other_run", attempt_id=str(command.attempt_id))
            return
        if attempt is None:
            self._log.debug("cancel_for_other_attempt", attempt_id=str(command.attempt_id))
            return
        token = attempt.task.token
        if token is not None and command.token_digest != token_digest(token):
            self._log.warning(
                "cancel_without_token_ignored",
                job_id=str(command.job_id),
                attempt_id=str(command.attempt_id),
            )
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
