"""Message handlers of the orchestrator: decode, apply, and say what becomes of
the message. Every path returns an :class:`Outcome`; none raises for bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel

from segue.broker.boundary import Outcome
from segue.broker.publisher import ConfirmedPublisher, Outgoing
from segue.engine import events as engine_events
from segue.engine.state import Job
from segue.protocol import kinds
from segue.protocol.codec import (
    COMMAND_ADAPTER,
    EVENT_ADAPTER,
    InvalidMessageError,
    decode,
    encode,
)
from segue.protocol.messages import (
    CancelJob,
    ErrorInfo,
    ErrorReply,
    GetJob,
    JobFinished,
    JobReply,
    JobStatus,
    ListWorkflows,
    RetryJob,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    SubmitJob,
    WorkerEvent,
    WorkflowsReply,
)
from segue.protocol.names import Names, update_routing_key
from segue.service.applier import Applied, Applier
from segue.store.repository import Store
from segue.workflows.loader import Catalog

MAX_REASON_CHARS = 4000
"""Longest rejection reason sent back (a huge invalid payload must not echo back whole)."""


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class Handlers:
    """Handlers for the commands and events queues."""

    def __init__(
        self,
        applier: Applier,
        store: Store,
        catalog: Catalog,
        publisher: ConfirmedPublisher,
        names: Names,
        clock: Callable[[], datetime],
        max_body_bytes: int,
    ) -> None:
        self._applier = applier
        self._store = store
        self._catalog = catalog
        self._publisher = publisher
        self._names = names
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        self._log = structlog.get_logger("segue.handlers")

    def use_catalog(self, catalog: Catalog) -> None:
        """Serve new submissions from ``catalog`` (running jobs keep their pinned workflow)."""
        self._catalog = catalog

    # --- commands -------------------------------------------------------------------

    async def on_command(self, message: AbstractIncomingMessage) -> Outcome:
        """Handle one message of the commands queue."""
        try:
            command = decode(COMMAND_ADAPTER, message.body, self._max_body_bytes)
        except InvalidMessageError as exc:
            answer_to = await self._submitter_to_answer(exc)
            if answer_to is not None:
                await self._reject(answer_to, kinds.INVALID_MESSAGE, exc.reason)
            return Outcome.dead(f"invalid command: {exc.reason}")
        structlog.contextvars.bind_contextvars(message_type=command.type)
        match command:
            case SubmitJob():
                return await self._submit(command)
            case CancelJob():
                return await self._cancel(command)
            case RetryJob():
                return await self._retry(command, message)
            case GetJob():
                return await self._get_job(command, message)
            case ListWorkflows():
                return await self._list_workflows(message)

    async def _submitter_to_answer(self, exc: InvalidMessageError) -> UUID | None:
        """The job id to answer an unusable command on, if any: only a possible
        submission of a job that does not exist (never announce a real job failed).
        """
        if exc.job_id is None or exc.message_type not in (None, "submit_job"):
            return None
        if await self._store.job_view(exc.job_id, include_history=False) is not None:
            return None
        return exc.job_id

    async def _submit(self, command: SubmitJob) -> Outcome:
        structlog.contextvars.bind_contextvars(job_id=str(command.job_id))
        applied = await self._applier.submit(
            command.job_id, lambda existing: self._submission(command, existing)
        )
        if applied is None:
            reason = (
                f"unknown workflow {command.workflow!r}; "
                f"known: {', '.join(self._catalog.names) or 'none'}"
            )
            await self._reject(command.job_id, kinds.UNKNOWN_WORKFLOW, reason)
            return Outcome.dead(reason)
        return await self._submit_outcome(command, applied)

    def _submission(
        self, command: SubmitJob, existing: Job | None
    ) -> engine_events.JobSubmitted | None:
        """The engine event for a submission; None when its workflow is unknown.

        A resubmission of an existing job keeps the job's pinned workflow, so it
        stays idempotent even after the workflow left the file.
        """
        if existing is not None:
            workflow, content_hash = existing.workflow, existing.workflow_hash
        else:
            loaded = self._catalog.get(command.workflow)
            if loaded is None:
                return None
            workflow, content_hash = loaded.workflow, loaded.content_hash
        return engine_events.JobSubmitted(
            job_id=command.job_id,
            workflow=workflow,
            workflow_hash=content_hash,
            params=command.params,
            priority=command.priority,
            reference=command.reference,
        )

    async def _submit_outcome(self, command: SubmitJob, applied: Applied) -> Outcome:
        decision = applied.decision
        if decision.rejected is not None:
            await self._reject(command.job_id, kinds.INVALID_PARAMETERS, decision.rejected)
            return Outcome.dead(
                f"invalid parameters: {shorten(decision.rejected, MAX_REASON_CHARS)}"
            )
        if decision.ignored is not None:
            return Outcome.ack("submission_ignored", decision.ignored)
        return Outcome.ack("job_submitted")

    async def _cancel(self, command: CancelJob) -> Outcome:
        structlog.contextvars.bind_contextvars(job_id=str(command.job_id))
        applied = await self._applier.apply(
            command.job_id, engine_events.CancelRequested(reason=command.reason)
        )
        if not applied.found:
            return Outcome.dead(f"cancel of unknown job {command.job_id}")
        if applied.decision.ignored is not None:
            return Outcome.ack("cancel_ignored", applied.decision.ignored)
        return Outcome.ack("job_cancel_applied")

    async def _retry(self, command: RetryJob, message: AbstractIncomingMessage) -> Outcome:
        structlog.contextvars.bind_contextvars(job_id=str(command.job_id))
        applied = await self._applier.apply(
            command.job_id, engine_events.RerunRequested(reason=command.reason)
        )
        if not applied.found:
            error = ErrorInfo(kind=kinds.UNKNOWN_JOB, message=f"no job {command.job_id}")
        elif applied.decision.ignored is not None:
            error = ErrorInfo(kind=kinds.RETRY_REFUSED, message=applied.decision.ignored)
        else:
            error = None
        if message.reply_to:
            view = await self._store.job_view(command.job_id, include_history=False)
            reply: BaseModel = (
                ErrorReply(error=error) if error else JobReply(job_id=command.job_id, job=view)
            )
            await self._reply(message, reply)
        if error is not None and not applied.found:
            return Outcome.dead(error.message)
        if error is not None:
            return Outcome.ack("retry_refused", error.message)
        return Outcome.ack("job_retried")

    async def _get_job(self, command: GetJob, message: AbstractIncomingMessage) -> Outcome:
        if not message.reply_to:
            return Outcome.dead("get_job without reply_to: nowhere to answer")
        view = await self._store.job_view(command.job_id, include_history=command.include_history)
        await self._reply(message, JobReply(job_id=command.job_id, job=view))
        return Outcome.ack("job_queried")

    async def _list_workflows(self, message: AbstractIncomingMessage) -> Outcome:
        if not message.reply_to:
            return Outcome.dead("list_workflows without reply_to: nowhere to answer")
        infos = [loaded.info() for loaded in self._catalog]
        await self._reply(message, WorkflowsReply(workflows=infos))
        return Outcome.ack("workflows_listed")

    # --- worker events --------------------------------------------------------------

    async def on_event(self, message: AbstractIncomingMessage) -> Outcome:
        """Handle one message of the events queue."""
        try:
            event = decode(EVENT_ADAPTER, message.body, self._max_body_bytes)
        except InvalidMessageError as exc:
            return Outcome.dead(f"invalid event: {exc.reason}")
        structlog.contextvars.bind_contextvars(
            message_type=event.type, job_id=str(event.job_id), attempt_id=str(event.attempt_id)
        )
        applied = await self._applier.apply(
            event.job_id, to_engine_event(event), precheck=_attempt_known(event.attempt_id)
        )
        if not applied.found:
            return Outcome.dead(f"{event.type} for unknown job {event.job_id}")
        decision = applied.decision
        if decision.rejected is not None:
            return Outcome.dead(decision.rejected)
        if decision.ignored is not None:
            return Outcome.ack("event_ignored", decision.ignored)
        return Outcome.ack("event_applied")

    # --- replies --------------------------------------------------------------------

    async def _reply(self, message: AbstractIncomingMessage, body: BaseModel) -> None:
        assert message.reply_to is not None
        await self._publisher.publish(
            Outgoing(
                exchange="",
                routing_key=message.reply_to,
                body=encode(body),
                correlation_id=message.correlation_id,
            )
        )

    async def _reject(self, job_id: UUID, kind: str, reason: str) -> None:
        """Tell the submitter of ``job_id`` its submission failed, and why."""
        result = JobFinished(
            job_id=job_id,
            status=JobStatus.FAILED,
            error=ErrorInfo(kind=kind, message=shorten(reason, MAX_REASON_CHARS)),
            at=self._clock(),
        )
        await self._publisher.publish(
            Outgoing(
                exchange=self._names.updates_exchange,
                routing_key=update_routing_key(job_id, "result"),
                body=encode(result),
            )
        )


def to_engine_event(event: WorkerEvent) -> engine_events.Event:
    """The engine's view of a worker event."""
    match event:
        case StepStarted():
            return engine_events.StepStarted(
                event.attempt_id, event.worker_id, redelivered=event.redelivered
            )
        case StepProgressed():
            return engine_events.StepProgressed(
                event.attempt_id, event.fraction, event.message, event.worker_id
            )
        case StepHeartbeat():
            return engine_events.StepHeartbeat(event.attempt_id, event.worker_id)
        case StepSucceeded():
            return engine_events.StepSucceeded(event.attempt_id, event.output, event.worker_id)
        case StepFailed():
            return engine_events.StepFailed(
                event.attempt_id, event.error, event.retryable, event.worker_id
            )
    raise TypeError(f"not a worker event: {type(event).__name__}")


def _attempt_known(attempt_id: UUID) -> Callable[[Job], str | None]:
    def check(job: Job) -> str | None:
        if job.attempt(attempt_id) is None:
            return f"unknown attempt {attempt_id} of job {job.job_id}"
        return None

    return check
