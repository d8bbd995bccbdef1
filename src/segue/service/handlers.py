"""Message handlers of the orchestrator: decode a batch, apply it, and say what
becomes of each message. Every path returns an :class:`Outcome`; none raises for
bad input.

Commands and events that change jobs go through :meth:`Applier.apply` together
(one transaction per batch); queries are answered after it, from the database.

Who may do what: a command's user is RabbitMQ's ``user_id`` property, which the
broker checks against the connection's user. A job's owner is the user of its
submission; only the owner and the users of the ``admins`` setting may cancel,
retry or read it (the engine decides for commands, under the job's lock), and a
submission may route its updates only to its own user's keys. Answers go only
to the caller's own reply queues (``<ns>.reply.<user>.``) or RabbitMQ's direct
reply-to, never to a queue the caller names freely.

Worker events are coalesced per batch: a heartbeat or progress report followed
by a later report of the same attempt in the batch is acknowledged without
being applied (the later one says at least as much).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel

from segue.broker.boundary import Outcome
from segue.broker.publisher import Publisher
from segue.engine import events as engine_events
from segue.engine.machine import may_act_on
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
    AttemptStatus,
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
    QueueEstimate,
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
from segue.protocol.names import CC_HEADER, Names, update_routing_key, updates_key_allowed
from segue.protocol.text import shorten
from segue.service.applier import Applied, Change
from segue.service.lag import EventsHorizon
from segue.service.turns import Turns
from segue.workflows.loader import Catalog

WAITING_ATTEMPT_STATUSES = frozenset({AttemptStatus.SCHEDULED, AttemptStatus.DISPATCHED})
MAX_REASON_CHARS = 4000
"""Longest rejection reason sent back (a huge invalid payload must not echo back whole)."""


def fresh_secret() -> str:
    """A new job's secret: 128 random bits, hex."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class _Refused:
    """A command refused before it reached the engine (e.g. a foreign updates key)."""

    job_id: UUID
    kind: str
    reason: str


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

    async def queue_estimate(self, job_id: UUID, now: datetime) -> QueueEstimate | None:
        """Where the job's waiting step stands in its queue; None if none waits."""
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
        admins: frozenset[str] = frozenset(),
        horizon: EventsHorizon | None = None,
        new_secret: Callable[[], str | None] = fresh_secret,
    ) -> None:
        self._applier = applier
        self._reader = reader
        self._catalog = catalog
        self._publisher = publisher
        self._names = names
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        self._admins = admins
        self._horizon = horizon
        self._new_secret = new_secret
        self._turns: Turns[UUID] = Turns()

    def _is_admin(self, user: str | None) -> bool:
        return user is not None and user in self._admins

    def use_catalog(self, catalog: Catalog) -> None:
        """Serve new submissions from ``catalog`` (running jobs keep their pinned workflow)."""
        self._catalog = catalog

    # --- commands -------------------------------------------------------------------

    async def on_commands(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Handle a batch of messages of the commands queue.

        Commands that change jobs are applied together first; queries and
        unusable commands are answered after that, all at once. Batches handled
        at once take turns on the jobs they share (:mod:`segue.service.turns`),
        so the commands and queries of a job are handled in the order they arrived.
        """
        changing: list[_Pending] = []
        answering: list[
            tuple[int, AbstractIncomingMessage, Command | InvalidMessageError | _Refused]
        ] = []
        for index, message in enumerate(messages):
            try:
                command = decode(COMMAND_ADAPTER, message.body, self._max_body_bytes)
            except InvalidMessageError as exc:
                answering.append((index, message, exc))
                continue
            refused = _foreign_updates_key(command, _user(message))
            if refused is not None:
                answering.append((index, message, refused))
            elif isinstance(command, GetJob | ListWorkflows):
                answering.append((index, message, command))
            else:
                changing.append(_Pending(index, message, command))
        changes = [self._command_change(p) for p in changing]
        jobs = [change.job_id for change in changes]
        jobs += [body.job_id for _, _, body in answering if isinstance(body, GetJob)]
        turn = self._turns.claim(jobs)  # before any await: see segue.service.turns
        try:
            await turn.ready()
            applied = await self._applier.apply(changes)
            answers = await asyncio.gather(
                *(
                    self._command_outcome(p, result)
                    for p, result in zip(changing, applied, strict=True)
                ),
                *(self._answer(message, body) for _, message, body in answering),
            )
        finally:
            turn.done()
        outcomes: list[Outcome | None] = [None] * len(messages)
        for index, outcome in zip(
            [p.index for p in changing] + [index for index, _, _ in answering], answers, strict=True
        ):
            outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    async def _answer(
        self, message: AbstractIncomingMessage, body: Command | InvalidMessageError | _Refused
    ) -> Outcome:
        """Answer a query, or dead-letter an unusable command."""
        match body:
            case InvalidMessageError():
                return await self._invalid_command(body)
            case _Refused():
                await self._reject(body.job_id, body.kind, body.reason, None)
                return Outcome.dead(body.reason)
            case GetJob():
                return await self._get_job(body, message)
            case ListWorkflows():
                return await self._list_workflows(message)
        raise TypeError(f"not a query: {type(body).__name__}")

    def _command_change(self, pending: _Pending) -> Change:
        user = _user(pending.message)
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
                    secret=self._new_secret(),
                    owner=user,
                    timeout_s=submit.timeout_s,
                )
                return Change(submit.job_id, event)
            case CancelJob() as cancel:
                cancelled = engine_events.CancelRequested(
                    reason=cancel.reason, requester=user, admin=self._is_admin(user)
                )
                return Change(cancel.job_id, cancelled)
            case RetryJob() as retry:
                rerun = engine_events.RerunRequested(
                    reason=retry.reason, requester=user, admin=self._is_admin(user)
                )
                return Change(retry.job_id, rerun)
        raise TypeError(f"not a command that changes a job: {type(pending.body).__name__}")

    async def _command_outcome(self, pending: _Pending, applied: Applied) -> Outcome:
        match pending.body:
            case SubmitJob() as submit:
                return await self._submit_outcome(submit, applied)
            case CancelJob() as cancel:
                if applied.decision.rejected is not None:
                    return Outcome.dead(applied.decision.rejected)
                if not applied.found:
                    return Outcome.ack(
                        "cancel_pending",
                        f"no job {cancel.job_id} yet: it ends cancelled if it is submitted",
                    )
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
        elif applied.decision.rejected is not None:
            error = ErrorInfo(
                kind=applied.decision.rejection_kind, message=applied.decision.rejected
            )
        elif applied.decision.ignored is not None:
            error = ErrorInfo(kind=kinds.RETRY_REFUSED, message=applied.decision.ignored)
        else:
            error = None
        if message.reply_to and self._may_reply(message):
            view = await self._reader.job_view(command.job_id, include_history=False)
            reply: BaseModel = (
                ErrorReply(error=error) if error else JobReply(job_id=command.job_id, job=view)
            )
            await self._reply(message, reply)
        if error is not None and (not applied.found or applied.decision.rejected is not None):
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
        if not self._may_reply(message):
            return Outcome.dead(_foreign_reply_to(message))
        view = await self._reader.job_view(command.job_id, include_history=command.include_history)
        user = _user(message)
        if view is not None and not may_act_on(view.owner, user, self._is_admin(user)):
            who = f"user {user!r}" if user else "a caller without a user id"
            reason = f"{who} may not read job {command.job_id}: it belongs to another user"
            await self._reply(
                message, ErrorReply(error=ErrorInfo(kind=kinds.FORBIDDEN, message=reason))
            )
            return Outcome.dead(reason)
        if view is not None and command.include_queue and _has_waiting_step(view):
            estimate = await self._reader.queue_estimate(command.job_id, self._clock())
            view = view.model_copy(update={"queue": estimate})
        await self._reply(message, JobReply(job_id=command.job_id, job=view))
        return Outcome.ack("job_queried")

    def _may_reply(self, message: AbstractIncomingMessage) -> bool:
        """Whether ``reply_to`` is one of the caller's own reply queues."""
        return message.reply_to is not None and self._names.reply_allowed(
            message.reply_to, _user(message)
        )

    async def _list_workflows(self, message: AbstractIncomingMessage) -> Outcome:
        if not message.reply_to:
            return Outcome.dead("list_workflows without reply_to: nowhere to answer")
        if not self._may_reply(message):
            return Outcome.dead(_foreign_reply_to(message))
        infos = [loaded.info() for loaded in self._catalog]
        await self._reply(message, WorkflowsReply(workflows=infos))
        return Outcome.ack("workflows_listed")

    # --- worker events --------------------------------------------------------------

    async def on_events(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Handle a batch of messages of the events queue."""
        outcomes: list[Outcome | None] = [None] * len(messages)
        decoded: list[tuple[int, WorkerEvent]] = []
        for index, message in enumerate(messages):
            try:
                event = decode(EVENT_ADAPTER, message.body, self._max_body_bytes)
            except InvalidMessageError as exc:
                outcomes[index] = Outcome.dead(f"invalid event: {exc.reason}")
                continue
            decoded.append((index, event))
        kept: list[tuple[int, WorkerEvent]] = []
        for (index, event), superseded in zip(decoded, _superseded(decoded), strict=True):
            if superseded:
                outcomes[index] = Outcome.ack("event_coalesced", "a later report follows")
            else:
                kept.append((index, event))
        changes = [Change(event.job_id, to_engine_event(event)) for _, event in kept]
        if changes:
            with self._holding_horizon(event for _, event in kept):
                applied = await self._applier.apply(changes)
            for (index, event), result in zip(kept, applied, strict=True):
                outcomes[index] = _event_outcome(event, result)
        return [outcome for outcome in outcomes if outcome is not None]

    def _holding_horizon(self, events: Iterable[WorkerEvent]) -> AbstractContextManager[None]:
        if self._horizon is None:
            return nullcontext()
        return self._horizon.handling(event.sent_at for event in events)

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


def _user(message: AbstractIncomingMessage) -> str | None:
    """The user that sent ``message`` (RabbitMQ checks ``user_id`` against the
    connection's user), None if it did not say."""
    return message.user_id or None


def _has_waiting_step(view: JobView) -> bool:
    """Whether an attempt of the live job waits for a worker (or for its retry)."""
    return not view.status.is_terminal and any(
        attempt.status in WAITING_ATTEMPT_STATUSES for attempt in view.attempts
    )


def _foreign_updates_key(command: Command, user: str | None) -> _Refused | None:
    """A refusal for a submission that routes its updates to another user's key."""
    if not isinstance(command, SubmitJob) or command.updates_key is None:
        return None
    if updates_key_allowed(command.updates_key, user):
        return None
    reason = (
        f"updates_key {command.updates_key!r} belongs to another user: "
        f"user {user!r} may use keys under 'client.{user}.' only"
    )
    return _Refused(command.job_id, kinds.FORBIDDEN, reason)


def _foreign_reply_to(message: AbstractIncomingMessage) -> str:
    return (
        f"reply_to {message.reply_to!r} is not a reply queue of user {_user(message)!r}: "
        "nothing was answered"
    )


def _superseded(events: Sequence[tuple[int, WorkerEvent]]) -> list[bool]:
    """For each event: whether it is a heartbeat or progress report that a later
    report of the same attempt by the same worker in the batch makes redundant."""
    seen: set[tuple[UUID, str]] = set()
    flags: list[bool] = []
    for _, event in reversed(events):
        key = (event.attempt_id, event.worker_id)
        flags.append(isinstance(event, StepHeartbeat | StepProgressed) and key in seen)
        seen.add(key)
    flags.reverse()
    return flags


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
                event.attempt_id,
                event.worker_id,
                redelivered=event.redelivered,
                token=event.token,
                run_id=event.run_id,
                sent_at=event.sent_at,
            )
        case StepProgressed():
            return engine_events.StepProgressed(
                event.attempt_id, event.fraction, event.message, event.worker_id, event.token
            )
        case StepHeartbeat():
            return engine_events.StepHeartbeat(event.attempt_id, event.worker_id, event.token)
        case StepSucceeded():
            return engine_events.StepSucceeded(
                event.attempt_id, event.output, event.worker_id, event.token
            )
        case StepFailed():
            return engine_events.StepFailed(
                event.attempt_id, event.error, event.retryable, event.worker_id, event.token
            )
    raise TypeError(f"not a worker event: {type(event).__name__}")
