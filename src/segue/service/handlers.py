"""Message handlers of the orchestrator: decode a batch, apply it, and say what
becomes of each message. Every path returns an :class:`Outcome`; none raises for
bad input.

Commands and events that change jobs go through :meth:`Applier.apply` together
(one transaction per batch); queries are answered after it, from the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel

from segue.broker.boundary import Outcome
from segue.broker.publisher import Publisher
from segue.engine import events as engine_events
from segue.protocol import kinds
from segue.protocol.codec import (
    COMMAND_ADAPTER,
    EVENT_ADAPTER,
    InvalidMessageError,
    decode,
    encode,
)
from segue.protocol.envelope import Outgoing
from segue.protocol.messages import (
    CancelJob,
    Command,
    ErrorInfo,
    ErrorReply,
    GetJob,
    JobFinished,
    JobReply,
    JobStatus,
    JobView,
    ListWorkflows,
    RetryJob,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    SubmitJob,
    WorkflowsReply,
)
from segue.protocol.messages import Event as WorkerEvent
from segue.protocol.names import CC_HEADER, Names, update_routing_key
from segue.service.applier import Applied, Change
from segue.workflows.loader import Catalog

MAX_REASON_CHARS = 4000
"""Longest rejection reason sent back (a huge invalid payload must not echo back whole)."""


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class ChangeApplier(Protocol):
    """Applies a batch of changes (see :class:`segue.service.applier.Applier`)."""

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """Apply the changes in one transaction; one result per change."""
        ...


class JobReader(Protocol):
    """Reads jobs as users see them (see :class:`segue.store.repository.Store`)."""

    async def job_view(self, job_id: UUID, include_history: bool = True) -> JobView | None:
        """The job, or None if there is none."""
        ...


@dataclass(frozen=True, slots=True)
class _Pending:
    """A decoded message waiting for its change to be applied."""

    index: int
    message: AbstractIncomingMessage
    body: Command | WorkerEvent


class Handlers:
    """Batch handlers for the commands and events queues."""

    def __init__(
        self,
        applier: ChangeApplier,
        reader: JobReader,
        catalog: Catalog,
        publisher: Publisher,
        names: Names,
        clock: Callable[[], datetime],
        max_body_bytes: int,
    ) -> None:
        self._applier = applier
        self._reader = reader
        self._catalog = catalog
        self._publisher = publisher
        self._names = names
        self._clock = clock
        self._max_body_bytes = max_body_bytes

    def use_catalog(self, catalog: Catalog) -> None:
        """Serve new submissions from ``catalog`` (running jobs keep their pinned workflow)."""
        self._catalog = catalog

    # --- commands -------------------------------------------------------------------

    async def on_commands(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Handle a batch of messages of the commands queue.

        Commands that change jobs are applied together first; queries and
        unusable commands are answered after that, all at once.
        """
        changing: list[_Pending] = []
        answering: list[tuple[int, AbstractIncomingMessage, Command | InvalidMessageError]] = []
        for index, message in enumerate(messages):
            try:
                command = decode(COMMAND_ADAPTER, message.body, self._max_body_bytes)
            except InvalidMessageError as exc:
                answering.append((index, message, exc))
                continue
            if isinstance(command, GetJob | ListWorkflows):
                answering.append((index, message, command))
            else:
                changing.append(_Pending(index, message, command))
        applied = await self._applier.apply([self._command_change(p) for p in changing])
        answers = await asyncio.gather(
            *(
                self._command_outcome(p, result)
                for p, result in zip(changing, applied, strict=True)
            ),
            *(self._answer(message, body) for _, message, body in answering),
        )
        outcomes: list[Outcome | None] = [None] * len(messages)
        for index, outcome in zip(
            [p.index for p in changing] + [index for index, _, _ in answering], answers, strict=True
        ):
            outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    async def _answer(
        self, message: AbstractIncomingMessage, body: Command | InvalidMessageError
    ) -> Outcome:
        """Answer a query, or dead-letter an unusable command."""
        match body:
            case InvalidMessageError():
                return await self._invalid_command(body)
            case GetJob():
                return await self._get_job(body, message)
            case ListWorkflows():
                return await self._list_workflows(message)
        raise TypeError(f"not a query: {type(body).__name__}")

    def _command_change(self, pending: _Pending) -> Change:
        match pending.body:
            case SubmitJob() as submit:
                loaded = self._catalog.get(submit.workflow)
                event: engine_events.Event = engine_events.JobSubmitted(
                    job_id=submit.job_id,
                    workflow=None if loaded is None else loaded.workflow,
                    workflow_hash="" if loaded is None else loaded.content_hash,
                    params=submit.params,
                    priority=submit.priority,
                    reference=submit.reference,
                    workflow_name=submit.workflow,
                    updates_key=submit.updates_key,
                )
                return Change(submit.job_id, event)
            case CancelJob() as cancel:
                return Change(cancel.job_id, engine_events.CancelRequested(reason=cancel.reason))
            case RetryJob() as retry:
                return Change(retry.job_id, engine_events.RerunRequested(reason=retry.reason))
        raise TypeError(f"not a command that changes a job: {type(pending.body).__name__}")

    async def _command_outcome(self, pending: _Pending, applied: Applied) -> Outcome:
        match pending.body:
            case SubmitJob() as submit:
                return await self._submit_outcome(submit, applied)
            case CancelJob() as cancel:
                if not applied.found:
                    return Outcome.dead(f"cancel of unknown job {cancel.job_id}")
                if applied.decision.ignored is not None:
                    return Outcome.ack("cancel_ignored", applied.decision.ignored)
                return Outcome.ack("job_cancel_applied")
            case RetryJob() as retry:
                return await self._retry_outcome(retry, pending.message, applied)
        raise TypeError(f"not a command that changes a job: {type(pending.body).__name__}")

    async def _submit_outcome(self, command: SubmitJob, applied: Applied) -> Outcome:
        decision = applied.decision
        if decision.rejected is not None:
            reason = decision.rejected
            if decision.rejection_kind == kinds.UNKNOWN_WORKFLOW:
                reason += f"; known: {', '.join(self._catalog.names) or 'none'}"
            await self._reject(command.job_id, decision.rejection_kind, reason, command.updates_key)
            if decision.rejection_kind == kinds.INVALID_PARAMETERS:
                return Outcome.dead(f"invalid parameters: {shorten(reason, MAX_REASON_CHARS)}")
            return Outcome.dead(shorten(reason, MAX_REASON_CHARS))
        if decision.ignored is not None:
            return Outcome.ack("submission_ignored", decision.ignored)
        return Outcome.ack("job_submitted")

    async def _retry_outcome(
        self, command: RetryJob, message: AbstractIncomingMessage, applied: Applied
    ) -> Outcome:
        if not applied.found:
            error = ErrorInfo(kind=kinds.UNKNOWN_JOB, message=f"no job {command.job_id}")
        elif applied.decision.ignored is not None:
            error = ErrorInfo(kind=kinds.RETRY_REFUSED, message=applied.decision.ignored)
        else:
            error = None
        if message.reply_to:
            view = await self._reader.job_view(command.job_id, include_history=False)
            reply: BaseModel = (
                ErrorReply(error=error) if error else JobReply(job_id=command.job_id, job=view)
            )
            await self._reply(message, reply)
        if error is not None and not applied.found:
            return Outcome.dead(error.message)
        if error is not None:
            return Outcome.ack("retry_refused", error.message)
        return Outcome.ack("job_retried")

    async def _invalid_command(self, exc: InvalidMessageError) -> Outcome:
        """Dead-letter an unusable command; answer it if it may be a new submission
        (never announce a real job failed)."""
        job_id = exc.job_id if exc.message_type in (None, "submit_job") else None
        if job_id is not None and await self._reader.job_view(job_id, False) is None:
            await self._reject(job_id, kinds.INVALID_MESSAGE, exc.reason, exc.updates_key)
        return Outcome.dead(f"invalid command: {exc.reason}")

    async def _get_job(self, command: GetJob, message: AbstractIncomingMessage) -> Outcome:
        if not message.reply_to:
            return Outcome.dead("get_job without reply_to: nowhere to answer")
        view = await self._reader.job_view(command.job_id, include_history=command.include_history)
        await self._reply(message, JobReply(job_id=command.job_id, job=view))
        return Outcome.ack("job_queried")

    async def _list_workflows(self, message: AbstractIncomingMessage) -> Outcome:
        if not message.reply_to:
            return Outcome.dead("list_workflows without reply_to: nowhere to answer")
        infos = [loaded.info() for loaded in self._catalog]
        await self._reply(message, WorkflowsReply(workflows=infos))
        return Outcome.ack("workflows_listed")

    # --- worker events --------------------------------------------------------------

    async def on_events(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Handle a batch of messages of the events queue."""
        outcomes: list[Outcome | None] = [None] * len(messages)
        changes: list[Change] = []
        decoded: list[tuple[int, WorkerEvent]] = []
        for index, message in enumerate(messages):
            try:
                event = decode(EVENT_ADAPTER, message.body, self._max_body_bytes)
            except InvalidMessageError as exc:
                outcomes[index] = Outcome.dead(f"invalid event: {exc.reason}")
                continue
            changes.append(Change(event.job_id, to_engine_event(event)))
            decoded.append((index, event))
        applied = await self._applier.apply(changes) if changes else []
        for (index, event), result in zip(decoded, applied, strict=True):
            outcomes[index] = _event_outcome(event, result)
        return [outcome for outcome in outcomes if outcome is not None]

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

    async def _reject(self, job_id: UUID, kind: str, reason: str, updates_key: str | None) -> None:
        """Tell the submitter of ``job_id`` its submission failed, and why (on the
        job's updates key and on the submitter's own, if it gave one)."""
        result = JobFinished(
            job_id=job_id,
            status=JobStatus.FAILED,
            error=ErrorInfo(kind=kind, message=shorten(reason, MAX_REASON_CHARS)),
            at=self._clock(),
        )
        headers: dict[str, str | list[str]] = {}
        if updates_key is not None:
            headers[CC_HEADER] = [updates_key]
        await self._publisher.publish(
            Outgoing(
                exchange=self._names.updates_exchange,
                routing_key=update_routing_key(job_id, "result"),
                body=encode(result),
                headers=headers,
            )
        )


def _event_outcome(event: WorkerEvent, applied: Applied) -> Outcome:
    if not applied.found:
        return Outcome.dead(f"{event.type} for unknown job {event.job_id}")
    decision = applied.decision
    if decision.rejected is not None:
        return Outcome.dead(decision.rejected)
    if decision.ignored is not None:
        return Outcome.ack("event_ignored", decision.ignored)
    return Outcome.ack("event_applied")


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
