"""What the Celery bridge does with each message: Segue tasks, Celery worker events,
Segue stops, and the periodic liveness check (see :mod:`segue.omotes.bridge`).

Every I/O seam is a Protocol here (the ledger, the stored inputs and outputs,
the Celery side, the Segue events), so the handlers run on fakes in unit tests
and on :class:`~segue.omotes.ledger.TaskLedger`,
:class:`~segue.omotes.store.OmotesInputs`, :class:`~segue.omotes.store.OmotesOutputs`,
:class:`~segue.omotes.celery_broker.CeleryBroker` and
:class:`~segue.worker.reporter.EventReporter` in the service. A handler returns
the :class:`~segue.broker.boundary.Outcome` of its message; what it raises is
settled by the consume boundary (transient: requeued, else dead-lettered).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

import structlog

from segue.broker.boundary import Outcome
from segue.omotes.celery_wire import AmqpMessage, CeleryWireError
from segue.omotes.store import OmotesInput, OmotesOutput, OutputJobGoneError
from segue.omotes.translate import WireError, parse
from segue.omotes.wire.omotes_wire_pb2 import TaskProgressUpdate, TaskResult
from segue.omotes.worker_translate import (
    TaskRecord,
    celery_task,
    event_fields,
    finished,
    progressed,
    started,
    stop_is_forged,
)
from segue.protocol import kinds
from segue.protocol.codec import TASK_ADAPTER, InvalidMessageError, decode
from segue.protocol.messages import CancelAttempt, ErrorInfo, StepFailed, StepHeartbeat, StepTask
from segue.worker.cancels import RecentCancels
from segue.worker.reporter import EventSink
from segue.workflows.loader import Catalog

MIN_BEAT_INTERVAL_S = 1.0
PRUNE_AGE_S = 60.0
"""Records younger than this are never pruned (their attempt may not be stored yet)."""


class Ledger(Protocol):
    """Records of dispatched Celery tasks (:class:`~segue.omotes.ledger.TaskLedger`)."""

    async def record(self, task: StepTask) -> bool: ...

    async def mark_published(self, attempt_id: UUID) -> None: ...

    def start(
        self, attempt_id: UUID, job_id: UUID
    ) -> AbstractAsyncContextManager[TaskRecord | None]: ...

    async def get(self, attempt_id: UUID) -> TaskRecord | None: ...

    async def forget(self, attempt_id: UUID) -> TaskRecord | None: ...

    async def running(self) -> list[TaskRecord]: ...

    async def attempt_live(self, attempt_id: UUID) -> bool: ...

    async def prune(self, recorded_before: datetime, limit: int = 500) -> list[TaskRecord]: ...


class Inputs(Protocol):
    """The inputs OMOTES submissions stored (:class:`~segue.omotes.store.OmotesInputs`)."""

    async def get(self, job_id: UUID) -> OmotesInput | None: ...


class Outputs(Protocol):
    """Where output ESDLs are stored (:class:`~segue.omotes.store.OmotesOutputs`)."""

    async def save(self, output: OmotesOutput) -> None: ...


class Celery(Protocol):
    """The Celery side (:class:`~segue.omotes.celery_broker.CeleryBroker`)."""

    @property
    def origin(self) -> str: ...

    async def send_task(self, name: str, message: AmqpMessage) -> None: ...

    async def revoke(self, task_id: str) -> None: ...

    async def active_tasks(self, window_s: float) -> set[str]: ...


def beat_interval(heartbeat_s: float | None) -> float | None:
    """How often a started task's liveness is checked: a third of its step's
    ``heartbeat_s`` (two checks may fail before Segue declares it lost), at least
    a second; None for a step without a heartbeat limit."""
    return None if heartbeat_s is None else max(MIN_BEAT_INTERVAL_S, heartbeat_s / 3)


class CeleryHandlers:
    """The bridge's handlers; ``catalog`` may be replaced (a reloaded workflow file)."""

    def __init__(
        self,
        ledger: Ledger,
        inputs: Inputs,
        outputs: Outputs,
        celery: Celery,
        reporter: EventSink,
        catalog: Catalog,
        clock: Callable[[], datetime],
        max_message_bytes: int,
        cancels: RecentCancels | None = None,
    ) -> None:
        self.catalog = catalog
        self._ledger = ledger
        self._inputs = inputs
        self._outputs = outputs
        self._celery = celery
        self._reporter = reporter
        self._clock = clock
        self._max_bytes = max_message_bytes
        self._cancels = cancels if cancels is not None else RecentCancels()
        self._checked: dict[UUID, float] = {}
        self._log = structlog.get_logger("segue.omotes.bridge")

    # --- Segue tasks -> Celery tasks ------------------------------------------------------

    async def on_task(self, body: bytes, priority: int) -> Outcome:
        """Publish the Celery task of a Segue task (``priority``: the task's, 0..9)."""
        try:
            task = decode(TASK_ADAPTER, body, self._max_bytes)
        except InvalidMessageError as exc:
            return Outcome.dead(f"invalid step task: {exc.reason}")
        heard = self._cancels.find(task)
        if heard is not None:
            reason = f"attempt {task.attempt_id} cancelled before it arrived: {heard.reason}"
            return Outcome.ack("omotes_task_cancelled", reason)
        with structlog.contextvars.bound_contextvars(
            job_id=str(task.job_id), attempt_id=str(task.attempt_id), task_type=task.queue
        ):
            return await self._dispatch(task, priority)

    async def _dispatch(self, task: StepTask, priority: int) -> Outcome:
        if await self._ledger.record(task):
            return Outcome.ack("omotes_task_already_dispatched")
        inputs = await self._inputs.get(task.job_id)
        loaded = self.catalog.get(task.workflow)
        workflow = None if loaded is None else loaded.workflow
        try:
            message = celery_task(task, inputs, workflow, priority, self._celery.origin)
        except CeleryWireError as exc:
            return await self._refuse(task, str(exc))
        await self._celery.send_task(task.queue, message)
        await self._ledger.mark_published(task.attempt_id)
        return Outcome.ack("omotes_task_dispatched")

    async def _refuse(self, task: StepTask, reason: str) -> Outcome:
        """Fail an attempt whose Celery task cannot be made (not retryable), at once."""
        error = ErrorInfo(kind=kinds.INVALID_TASK, message=reason, step=task.step)
        record = await self._ledger.forget(task.attempt_id)
        if record is not None:
            event = StepFailed(**event_fields(record, self._clock()), error=error, retryable=False)
            await self._reporter.send_or_raise(event)
        return Outcome.dead(f"cannot make the Celery task: {reason}")

    # --- Celery worker events -> Segue events ---------------------------------------------

    async def on_progress(self, body: bytes) -> Outcome:
        """Report a ``TaskProgressUpdate``: a START, or progress."""
        try:
            update: TaskProgressUpdate = parse(TaskProgressUpdate, body)
        except WireError as exc:
            return Outcome.dead(str(exc))
        attempt_id = _uuid(update.celery_task_id)
        if attempt_id is None:
            return _dropped(f"task id {update.celery_task_id[:100]!r} is no Segue attempt id")
        with structlog.contextvars.bound_contextvars(
            job_id=update.job_id[:100], attempt_id=str(attempt_id)
        ):
            match update.WhichOneof("update"):
                case "status":  # the only status there is: START
                    return await self._on_start(attempt_id, _uuid(update.job_id))
                case "progress":
                    return await self._on_progressed(attempt_id, update)
                case _:
                    return _dropped("a progress update with neither status nor progress")

    async def _on_start(self, attempt_id: UUID, job_id: UUID | None) -> Outcome:
        if job_id is not None:
            async with self._ledger.start(attempt_id, job_id) as record:
                if record is not None:
                    await self._reporter.send_or_raise(started(record, self._clock()))
                    return Outcome.ack("omotes_task_started", f"run {record.starts}")
        await self._celery.revoke(str(attempt_id))
        return _dropped("a START of a task the bridge does not wait for (revoked)")

    async def _on_progressed(self, attempt_id: UUID, update: TaskProgressUpdate) -> Outcome:
        record = await self._known(attempt_id, update.job_id)
        if record is None:
            return _dropped("progress of a task the bridge does not wait for")
        await self._reporter.send_or_raise(progressed(update, record, self._clock()))
        return Outcome.ack("omotes_task_progress")

    async def on_result(self, body: bytes) -> Outcome:
        """Store a succeeded task's output ESDL, report the ``TaskResult``, then forget
        the task. Each step is idempotent: a result handled again (its report
        failed, or it came twice) stores nothing new and is reported again, which
        Segue ignores once it has the first."""
        try:
            result: TaskResult = parse(TaskResult, body)
        except WireError as exc:
            return Outcome.dead(str(exc))
        attempt_id = _uuid(result.celery_task_id)
        if attempt_id is None:
            return _dropped(f"task id {result.celery_task_id[:100]!r} is no Segue attempt id")
        with structlog.contextvars.bound_contextvars(
            job_id=result.job_id[:100], attempt_id=str(attempt_id)
        ):
            record = await self._known(attempt_id, result.job_id)
            if record is None:
                return _dropped("the result of a task the bridge does not wait for")
            end = finished(result, record, self._clock(), self._max_bytes)
            if end.output is not None:
                try:
                    await self._outputs.save(end.output)
                except OutputJobGoneError:
                    await self._ledger.forget(attempt_id)
                    return _dropped("the result of a job that no longer exists")
            await self._reporter.send_or_raise(end.event)
            await self._ledger.forget(attempt_id)
            outcome = TaskResult.ResultType.Name(result.result_type)
            return Outcome.ack("omotes_task_finished", outcome)

    async def _known(self, attempt_id: UUID, job_id: str) -> TaskRecord | None:
        record = await self._ledger.get(attempt_id)
        return record if record is not None and str(record.job_id) == job_id else None

    # --- Segue stops -> Celery revokes ----------------------------------------------------

    async def on_stop(self, command: CancelAttempt) -> None:
        """Revoke the attempt's Celery task if the attempt is over (else remember the
        stop, for a task still on its way to the bridge). Never raises: the ledger
        prunes (and revokes) whatever a failure leaves."""
        log = self._log.bind(job_id=str(command.job_id), attempt_id=str(command.attempt_id))
        try:
            record = await self._ledger.get(command.attempt_id)
            if record is None:
                self._cancels.remember(command)
                return
            if stop_is_forged(record, command):
                log.warning("omotes_stop_without_token_ignored")
                return
            if await self._ledger.attempt_live(record.attempt_id):
                log.debug("omotes_stop_of_live_attempt_ignored", worker_id=command.worker_id)
                return
            await self._celery.revoke(str(record.attempt_id))
            await self._ledger.forget(record.attempt_id)
            log.info("omotes_task_revoked", reason=command.reason, worker_id=record.worker_id)
        except Exception as exc:
            log.warning("omotes_stop_failed", error=f"{type(exc).__name__}: {exc}")

    # --- liveness -------------------------------------------------------------------------

    async def beat(self, now: float, window_s: float) -> None:
        """Heartbeats for the started tasks whose check is due (``now``: a monotonic
        clock) and that a worker runs (``inspect active``, answers within ``window_s``)."""
        running = await self._ledger.running()
        self._checked = {r.attempt_id: self._checked.get(r.attempt_id, -math.inf) for r in running}
        due = [r for r in running if _due(r, self._checked[r.attempt_id], now)]
        if not due:
            return
        active = await self._celery.active_tasks(window_s)
        for record in due:
            self._checked[record.attempt_id] = now
            if str(record.attempt_id) in active:
                await self._reporter.send_once(StepHeartbeat(**event_fields(record, self._clock())))
            else:
                self._log.info("omotes_task_not_running", attempt_id=str(record.attempt_id))

    async def prune(self) -> list[TaskRecord]:
        """Forget (and revoke) tasks of attempts that ended without the bridge hearing it."""
        pruned = await self._ledger.prune(self._clock() - timedelta(seconds=PRUNE_AGE_S))
        for record in pruned:
            await self._celery.revoke(str(record.attempt_id))
            self._log.info("omotes_task_pruned", attempt_id=str(record.attempt_id))
        return pruned


def _due(record: TaskRecord, checked: float, now: float) -> bool:
    interval = beat_interval(record.heartbeat_s)
    return interval is not None and now - checked >= interval


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _dropped(reason: str) -> Outcome:
    return Outcome.ack("omotes_event_dropped", reason)
