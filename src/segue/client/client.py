"""The :class:`SegueClient`: submit jobs, follow them, cancel them, query them.

One connection, one channel with publisher confirms, and one exclusive reply
queue that receives query replies and job updates. It is bound once, at
connect, with the client's own updates key, which every submission carries: the
orchestrator routes each update of those jobs there too (CC), so submitting
costs no binding. A job this client did not submit is followed with a binding
of its own (``client.<user>.job.<id>.*``), removed once its result arrived.

Every name is the user's own, so RabbitMQ's permissions can keep users apart
(docs/security.md): each command carries the connection's user as ``user_id``
(the broker refuses any other), the reply queue is named
``<namespace>.reply.<user>.<random>``, and the updates key is
``client.<user>.<random>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ChannelNotFoundEntity
from pydantic import BaseModel

from segue.broker.connection import connect
from segue.broker.env import ConnectionSettings
from segue.broker.publisher import ConfirmedPublisher, Outgoing
from segue.broker.topology import declare_exchanges, ensure_queue
from segue.client.errors import (
    ForbiddenError,
    NotConnectedError,
    PublishError,
    RequestFailedError,
    RequestTimeoutError,
    request_error,
)
from segue.client.feed import JobFeed
from segue.client.handle import JobHandle
from segue.client.identity import choose_job_id, connection_user
from segue.client.inbox import Inbox, Routing
from segue.logs import library_logger
from segue.protocol.codec import encode
from segue.protocol.messages import (
    CancelJob,
    ErrorInfo,
    ErrorReply,
    GetJob,
    JobFinished,
    JobReply,
    JobStatus,
    JobView,
    ListWorkflows,
    Reply,
    RetryJob,
    SubmitJob,
    WorkflowInfo,
    WorkflowsReply,
)
from segue.protocol.names import (
    ANY_OWNER_JOB_UPDATES,
    Names,
    client_updates_key,
    job_updates_binding,
)
from segue.protocol.topology import orchestrator_queues

RESYNC_FIRST_RETRY_S = 0.5
RESYNC_MAX_RETRY_S = 10.0
"""Pauses between queries when catching up with a job whose state is unknown."""
FINAL_CHECK_S = 5.0
"""Longest a timed-out :meth:`JobHandle.result` waits for its last query."""


def retry_delays(first_s: float, max_s: float) -> Iterator[float]:
    """Endless doubling delays from ``first_s``, capped at ``max_s``."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, max_s)


def _being_cancelled() -> bool:
    """Whether the current task itself is being cancelled (not a library's stray cancel)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def finished_from_view(view: JobView) -> JobFinished:
    """The result message a terminal job would have sent, rebuilt from its stored state.

    The output of a succeeded job is the output of its last step, as in the
    ``job_result`` update.
    """
    output = view.outputs.get(view.current_step) if view.current_step else None
    return JobFinished(
        job_id=view.job_id,
        status=view.status,
        output=output if view.status is JobStatus.SUCCEEDED else None,
        error=view.error,
        at=view.finished_at or view.updated_at,
    )


class _Session:
    """What exists while connected."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        reply_queue: AbstractQueue,
        names: Names,
        updates_key: str,
        user: str,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.reply_queue = reply_queue
        self.names = names
        self.updates_key = updates_key
        self.user = user
        self.sender = ConfirmedPublisher(channel, user_id=user)
        self.bound: set[UUID] = set()
        """Jobs followed with a binding of their own (not submitted by this client)."""


class SegueClient:
    """Talks to a Segue orchestrator over RabbitMQ.

    ``amqp_url`` / ``namespace``: None means ``SEGUE_AMQP_URL`` /
    ``SEGUE_NAMESPACE`` from the environment (defaults
    ``amqp://guest:guest@127.0.0.1:5672/`` and ``segue``). Queries wait at
    most ``request_timeout_s`` for an answer.

    ``user``: the RabbitMQ user the connection logs in as; None means the
    URL's (``guest`` if it names none). Give it when the broker learns the
    user otherwise (e.g. from a client certificate). The user owns the jobs it
    submits; only it and the orchestrator's admins (``SEGUE_ADMINS``) may
    cancel, retry or read them.

    ``admin``: follow any user's job (:meth:`follow` binds
    ``#.job.<id>.*`` instead of the user's own ``client.<user>.job.<id>.*``);
    for users in ``SEGUE_ADMINS`` whose topic permissions allow that binding.
    """

    def __init__(
        self,
        amqp_url: str | None = None,
        namespace: str | None = None,
        *,
        request_timeout_s: float = 30.0,
        connection_name: str = "segue-client",
        user: str | None = None,
        admin: bool = False,
    ) -> None:
        if request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be positive, got {request_timeout_s}")
        self._amqp_url = amqp_url
        self._namespace = namespace
        self._user = user
        self._admin = admin
        self._request_timeout_s = request_timeout_s
        self._connection_name = connection_name
        self._session: _Session | None = None
        self._inbox = Inbox()
        self._resyncs: dict[UUID, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._log = library_logger("segue.client")

    # --- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, declare what the client uses and start listening on its reply queue.

        Raises :class:`BrokerUnavailableError` if RabbitMQ cannot be reached.
        """
        if self._session is not None:
            return
        settings = ConnectionSettings.resolve(self._amqp_url, self._namespace)
        names = Names(settings.namespace)
        user = self._user or connection_user(settings.amqp_url)
        connection = await connect(settings.amqp_url, self._connection_name)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await _ensure_topology(channel, names)
            reply_queue = await channel.declare_queue(
                names.reply_queue_prefix(user) + uuid4().hex, exclusive=True, auto_delete=True
            )
            # One binding for the updates of every job this client submits (they
            # carry this key in their CC header), instead of one per job.
            updates_key = client_updates_key(uuid4().hex, user)
            await reply_queue.bind(names.updates_exchange, routing_key=updates_key)
            await reply_queue.consume(self._on_message, no_ack=True)
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._session = _Session(connection, channel, reply_queue, names, updates_key, user)

    async def close(self) -> None:
        """Stop following jobs and close the connection."""
        session, self._session = self._session, None
        tasks = [*self._resyncs.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if session is not None:
            session.connection.reconnect_callbacks.discard(self._on_reconnect)
            await session.connection.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- commands -----------------------------------------------------------------------

    async def submit(
        self,
        workflow: str,
        params: Mapping[str, Any] | None = None,
        *,
        job_id: UUID | None = None,
        priority: int = 5,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobHandle:
        """Submit a job; returns once the broker has taken the submission.

        The id is ``job_id``, else derived from ``idempotency_key`` (the same
        key always names the same job, so a retried submit cannot create a
        second one), else random. Use :meth:`JobHandle.accepted` to learn
        whether the orchestrator accepted it.
        """
        command = SubmitJob(
            job_id=choose_job_id(job_id, idempotency_key),
            workflow=workflow,
            params=dict(params or {}),
            priority=priority,
            reference=reference,
            updates_key=self._require_session().updates_key,
        )
        # The client's own binding exists before the submission is sent: no update
        # of this job can be missed (short of a reconnect, after which every
        # followed job is queried).
        handle = self._handle(command.job_id, query_first=False)
        try:
            await self._send(command)
        except BaseException:
            await self._stop_following(command.job_id)
            raise
        self._log.info("job_submitted", job_id=str(command.job_id), workflow=workflow)
        return handle

    async def follow(self, job_id: UUID) -> JobHandle:
        """A handle on an existing job: its updates from now on, and its result.

        The job may have finished before, so the handle's :meth:`JobHandle.result`
        asks the orchestrator for its state first.
        """
        return await self._follow(job_id, query_first=True)

    async def _follow(self, job_id: UUID, query_first: bool) -> JobHandle:
        session = self._require_session()
        if job_id not in session.bound:
            await session.reply_queue.bind(
                session.names.updates_exchange, routing_key=self._binding(session, job_id)
            )
            session.bound.add(job_id)
        return self._handle(job_id, query_first)

    def _binding(self, session: _Session, job_id: UUID) -> str:
        """The binding that receives the updates of ``job_id``: of the user's own
        job, or of anyone's for an admin."""
        if self._admin:
            return ANY_OWNER_JOB_UPDATES.format(job_id=job_id)
        return job_updates_binding(job_id, owner=session.user)

    def _handle(self, job_id: UUID, query_first: bool) -> JobHandle:
        feed = self._inbox.follow(job_id)
        return JobHandle(
            job_id,
            feed,
            self,
            lambda: self._catch_up(feed),
            query_first=query_first,
            final_check_s=min(FINAL_CHECK_S, self._request_timeout_s),
        )

    async def cancel(self, job_id: UUID, reason: str = "cancelled by client") -> None:
        """Ask the orchestrator to cancel ``job_id`` (it ends ``cancelled`` if not finished)."""
        await self._send(CancelJob(job_id=job_id, reason=reason))

    async def retry(self, job_id: UUID, reason: str = "retry requested") -> JobView:
        """Run a failed or timed-out job again from the step that failed.

        Returns the job as it is after the request (status ``queued``, a new
        ``run``); raises :class:`RequestFailedError` if the orchestrator refused
        (unknown job, or a job that is not failed or timed out), its subclass
        :class:`ForbiddenError` for a job of another user.
        """
        reply = await self._request(RetryJob(job_id=job_id, reason=reason))
        if not isinstance(reply, JobReply) or reply.job is None:
            raise RequestFailedError(_unexpected(reply, "job_reply"))
        return reply.job

    # --- queries ------------------------------------------------------------------------

    async def get(
        self, job_id: UUID, include_history: bool = True, include_queue: bool = False
    ) -> JobView | None:
        """The job's stored state and history; None if the orchestrator does not know it.

        With ``include_queue``, while a step of the job waits for a worker,
        ``JobView.queue`` says where it stands in its queue and estimates when
        it will be done (:class:`~segue.protocol.messages.QueueEstimate`).

        Raises :class:`RequestTimeoutError` if no orchestrator answers in time,
        :class:`ForbiddenError` for a job of another user.
        """
        query = GetJob(job_id=job_id, include_history=include_history, include_queue=include_queue)
        reply = await self._request(query)
        if not isinstance(reply, JobReply):
            raise RequestFailedError(_unexpected(reply, "job_reply"))
        return reply.job

    async def workflows(self) -> list[WorkflowInfo]:
        """The workflows the orchestrator runs, with their parameters' JSON Schema."""
        reply = await self._request(ListWorkflows())
        if not isinstance(reply, WorkflowsReply):
            raise RequestFailedError(_unexpected(reply, "workflows_reply"))
        return reply.workflows

    # --- internals ----------------------------------------------------------------------

    async def _send(
        self, command: BaseModel, reply_to: str | None = None, correlation_id: str | None = None
    ) -> None:
        session = self._require_session()
        outgoing = Outgoing(
            exchange=session.names.commands_exchange,
            routing_key=session.names.commands_queue,
            body=encode(command),
            message_id=uuid4().hex,
            reply_to=reply_to,
            correlation_id=correlation_id,
        )
        try:
            await session.sender.publish(outgoing)
        except (PublishError, *CONNECTION_EXCEPTIONS) as exc:
            raise PublishError(
                f"the broker did not confirm {type(command).__name__}: {type(exc).__name__}: {exc}"
            ) from exc

    async def _request(self, query: GetJob | ListWorkflows | RetryJob) -> Reply:
        session = self._require_session()
        correlation_id = uuid4().hex
        future = self._inbox.expect(correlation_id)
        try:
            try:
                await self._send(query, session.reply_queue.name, correlation_id)
            except PublishError:
                if not future.done():  # the answer may beat the confirm
                    raise
            reply = await asyncio.wait_for(future, self._request_timeout_s)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"no answer to {query.type} within {self._request_timeout_s} s; "
                f"is an orchestrator running on namespace {session.names.namespace!r}?"
            ) from exc
        finally:
            self._inbox.forget(correlation_id)
        if isinstance(reply, ErrorReply):
            raise request_error(reply.error)
        return reply

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        routed = self._inbox.deliver(message.body, message.correlation_id, message.message_id)
        job_id = str(routed.job_id) if routed.job_id else None
        match routed.routing:
            case Routing.FINISHED:
                assert routed.job_id is not None
                self._spawn(self._stop_following(routed.job_id))
            case Routing.TERMINAL_STATUS:
                assert routed.job_id is not None
                self._start_resync(self._inbox.follow(routed.job_id))
            case Routing.INVALID:
                self._log.warning("client_message_invalid", job_id=job_id, reason=routed.reason)
            case Routing.UNEXPECTED:
                self._log.debug("client_message_unexpected", job_id=job_id, reason=routed.reason)
            case Routing.STALE:
                self._log.debug("client_update_stale", job_id=job_id, reason=routed.reason)
            case _:
                pass

    async def _stop_following(self, job_id: UUID) -> None:
        """The job sent its result: stop routing and receiving its updates."""
        self._inbox.unfollow(job_id)
        session = self._session
        if session is None or job_id not in session.bound:
            return
        session.bound.discard(job_id)
        try:
            await session.reply_queue.unbind(
                session.names.updates_exchange, routing_key=self._binding(session, job_id)
            )
        except CONNECTION_EXCEPTIONS as exc:  # the queue and its bindings die with us anyway
            self._log.debug("client_unbind_failed", job_id=str(job_id), error=str(exc))

    async def _catch_up(self, feed: JobFeed) -> None:
        """Ask for the job's state once; a finished job's result goes into its feed.

        Without an answer, keep asking in the background until one comes.
        Raises :class:`ForbiddenError` for a job of another user: asking again
        would not help.
        """
        try:
            await self._query_into(feed)
        except ForbiddenError:
            raise
        except (RequestTimeoutError, PublishError, RequestFailedError) as exc:
            self._log.info("client_catch_up_deferred", job_id=str(feed.job_id), error=str(exc))
            self._start_resync(feed)

    async def _query_into(self, feed: JobFeed) -> None:
        view = await self.get(feed.job_id, include_history=False, include_queue=False)
        if view is not None and view.status.is_terminal and feed.result is None:
            feed.push(finished_from_view(view))
            await self._stop_following(feed.job_id)

    def _start_resync(self, feed: JobFeed) -> None:
        if feed.result is not None or feed.job_id in self._resyncs:
            return
        task = asyncio.create_task(self._resync(feed), name=f"segue-resync-{feed.job_id}")
        self._resyncs[feed.job_id] = task
        task.add_done_callback(lambda _: self._resyncs.pop(feed.job_id, None))

    async def _resync(self, feed: JobFeed) -> None:
        delays = retry_delays(RESYNC_FIRST_RETRY_S, RESYNC_MAX_RETRY_S)
        while feed.result is None and self._session is not None:
            try:
                await self._query_into(feed)
            except ForbiddenError as exc:
                self._log.warning(
                    "client_resync_forbidden", job_id=str(feed.job_id), error=str(exc)
                )
                return
            except (RequestTimeoutError, PublishError, RequestFailedError) as exc:
                self._log.info("client_resync_retry", job_id=str(feed.job_id), error=str(exc))
                await asyncio.sleep(next(delays))
            else:
                return

    def _on_reconnect(self, _connection: object) -> None:
        """Updates may have been lost while disconnected: ask about every followed job."""
        self._log.info("client_reconnected", following=len(self._inbox.feeds()))
        for feed in self._inbox.feeds():
            if feed.result is None:
                self._start_resync(feed)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _require_session(self) -> _Session:
        if self._session is None:
            raise NotConnectedError(
                "the client is not connected: use `async with SegueClient(...)` or `connect()`"
            )
        return self._session


async def _ensure_topology(channel: AbstractChannel, names: Names) -> None:
    """Make sure the commands exchange and the commands queue exist; declare the
    exchanges and the queue only if they do not.

    Looking needs no permission, declaring needs RabbitMQ's configure permission,
    which a client is not given in an installation with users of its own
    (docs/security.md): there the orchestrator has declared them. A client that
    may (guest, in development) declares them, so a job submitted before any
    orchestrator ever ran is kept rather than dropped as unroutable.
    """
    try:
        if isinstance(channel, AbstractRobustChannel):  # not redeclared on reconnect
            await channel.declare_exchange(names.commands_exchange, passive=True, robust=False)
        else:
            await channel.declare_exchange(names.commands_exchange, passive=True)
    except ChannelNotFoundEntity:
        await channel.reopen()  # the broker closed the channel
        await declare_exchanges(channel, names)
    for spec in orchestrator_queues(names):
        if spec.name == names.commands_queue:
            await ensure_queue(channel, spec)


def _unexpected(reply: Reply, expected: str) -> ErrorInfo:
    return ErrorInfo(kind="unexpected_reply", message=f"expected {expected}, got {reply.type}")
