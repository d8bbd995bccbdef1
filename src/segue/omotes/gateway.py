"""The OMOTES gateway: unmodified OMOTES 4.x clients (``OmotesInterface``) on Segue.

An adapter at the edge. It translates and forwards; the engine and the store
are Segue's own and do not know OMOTES exists.

OMOTES side (vhost ``omotes``), declared exactly as the OMOTES SDK declares
it, and again after a broker restart (robust connection):

- ``omotes_exchange``: direct, not durable;
- ``job_submissions`` and ``job_deletions``: durable, no arguments, bound
  with their own names;
- ``request_available_workflows.<gateway id>``: exclusive, one per replica,
  bound to ``request_available_workflows``.

The per-job queues ``jobs.<uuid>.status|progress|result`` belong to the
client: the gateway never declares them and publishes to ``omotes_exchange``
with the queue name as routing key. A publish nobody receives (the client
deleted its queues, or is gone) is dropped by the broker, as intended.

Segue side (the installation's vhost): submissions and deletions become
``SubmitJob`` and ``CancelJob`` commands on the commands exchange, published
as the connection's user with confirms. Every submission carries the
gateway's updates key (``client.<user>.omotes``), so every update of those
jobs is also routed to the gateway's durable queue
``<namespace>.omotes.updates`` (single active consumer: one replica at a time
translates, in order), and from there to the client's per-job queues.

Each incoming message is acknowledged only once what it leads to is done: a
submission once its input ESDL is stored and its ``SubmitJob`` confirmed by
the broker, a deletion once its ``CancelJob`` is confirmed and the job's
stored ESDLs (``omotes_inputs``, ``omotes_outputs``) are deleted, an update
once its OMOTES messages are confirmed. A ``JobResult`` whose output ESDL the
Celery bridge stored apart is completed from ``omotes_outputs`` just before it
is sent (a few at a time: they may be large); a row that is gone makes it an
``ERROR`` result saying so. A message that cannot be used (invalid protobuf,
not the expected message) is dead-lettered to Segue's dead-letter queue with
the reason; a handler never crashes its consumer
(:class:`~segue.broker.boundary.ConsumeBoundary`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog
from aio_pika import ExchangeType
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pamqp.commands import Basic

from segue.broker.batching import BatchConsumer
from segue.broker.boundary import ConsumeBoundary, Outcome, Verdict
from segue.broker.connection import connect
from segue.broker.publisher import PERSISTENT, ConfirmedPublisher, PublishError
from segue.broker.topology import declare_queue
from segue.client.identity import connection_user
from segue.errors import SegueError, describe
from segue.omotes.discovery import available_workflows
from segue.omotes.names import OmotesNames
from segue.omotes.store import (
    OmotesInput,
    OmotesInputs,
    OmotesOutputs,
    check_tables,
    connect_pool,
)
from segue.omotes.translate import (
    OutputEsdlRef,
    Refusal,
    Submission,
    ToClient,
    UpdateTranslator,
    WireError,
    output_unreadable,
    parse,
    read_delete,
    read_submission,
    with_output_esdl,
)
from segue.omotes.wire.omotes_wire_pb2 import JobResult, RequestAvailableWorkflows
from segue.protocol.codec import UPDATE_ADAPTER, InvalidMessageError, decode, encode
from segue.protocol.envelope import Outgoing
from segue.protocol.messages import CancelJob, SubmitJob, Update
from segue.protocol.names import Names
from segue.protocol.topology import QueueSpec, dead_letter_arguments
from segue.service.failures import is_transient
from segue.settings import Settings
from segue.workflows.loader import Catalog

CONNECTION_NAME = "segue-omotes-gateway"
ORPHAN_GRACE = timedelta(days=7)
"""Stored inputs whose job does not exist are deleted once they are this old (a
submission may wait that long for an orchestrator before its job exists)."""
REQUEUE_PAUSE_S = 1.0
"""Pause before handing back messages whose commands or updates were not confirmed."""
DRAIN_TIMEOUT_S = 30.0
POOL_SIZE = 3
"""Database connections of the gateway (opened as needed)."""
OUTPUT_ESDLS_AT_ONCE = 2
"""Results completed with their stored output ESDL at once (each may be tens of MB)."""


class OutputReadError(SegueError):
    """A stored output ESDL could not be read for now (the database is away)."""


class ClientPublisher:
    """Publishes OMOTES messages on the OMOTES exchange, confirmed, as the OMOTES
    orchestrator does: persistent, and no other property (the body is the bare
    protobuf). Not ``mandatory``: a message no queue takes is dropped."""

    def __init__(
        self, channel: AbstractChannel, exchange: str, confirm_timeout_s: float = 30.0
    ) -> None:
        self._channel = channel
        self._exchange = exchange
        self._confirm_timeout_s = confirm_timeout_s

    async def publish(self, routing_key: str, body: bytes) -> None:
        """Publish and wait for the broker's confirm; :class:`PublishError` if refused."""
        try:
            channel = await self._channel.get_underlay_channel()
            confirmation = await channel.basic_publish(
                body,
                exchange=self._exchange,
                routing_key=routing_key,
                properties=Basic.Properties(delivery_mode=PERSISTENT),
                timeout=self._confirm_timeout_s,
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise PublishError(
                f"connection lost before the broker confirmed {routing_key!r}"
            ) from None
        if not isinstance(confirmation, Basic.Ack):
            raise PublishError(f"the broker refused the message for {routing_key!r}")

    async def publish_all(self, messages: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Publish ``(routing key, body)`` pairs in order, confirms overlapped; True per
        confirmed one. Never raises for a refused message."""
        results = await asyncio.gather(
            *(self.publish(key, body) for key, body in messages), return_exceptions=True
        )
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
        return [result is None for result in results]


@dataclass
class _Running:
    """What exists while the gateway runs."""

    pool: asyncpg.Pool
    inputs: OmotesInputs
    outputs: OmotesOutputs
    segue: AbstractRobustConnection
    omotes: AbstractRobustConnection
    sender: ConfirmedPublisher
    clients: ClientPublisher
    consumers: list[BatchConsumer]


class OmotesGateway:
    """Serves OMOTES clients from a Segue orchestrator (see the module docstring).

    Build it in the composition root, :meth:`start` it once the orchestrator's
    topology is declared, call :meth:`use_catalog` after a workflow reload, and
    :meth:`stop` it before the orchestrator's connection closes.
    """

    def __init__(
        self,
        settings: Settings,
        names: Names,
        catalog: Catalog,
        clock: Callable[[], datetime],
        *,
        gateway_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._names = OmotesNames.of(settings, names, gateway_id or uuid4().hex[:12])
        self._catalog = catalog
        self._clock = clock
        self._user = connection_user(settings.amqp_url)
        self._updates_key = self._names.updates_key(self._user)
        self._translator = UpdateTranslator()
        self._output_esdls = asyncio.Semaphore(OUTPUT_ESDLS_AT_ONCE)
        self._running: _Running | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger("segue.omotes")

    @property
    def names(self) -> OmotesNames:
        """The names this gateway uses."""
        return self._names

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to both vhosts, declare, start consuming and offer the workflows."""
        if self._running is not None:
            return
        async with contextlib.AsyncExitStack() as stack:
            pool = await connect_pool(self._settings.database_url, POOL_SIZE)
            stack.push_async_callback(pool.close)
            await check_tables(pool)
            segue = await connect(self._settings.amqp_url, CONNECTION_NAME)
            stack.push_async_callback(segue.close)
            omotes = await connect(self._settings.omotes_amqp_url, CONNECTION_NAME)
            stack.push_async_callback(omotes.close)
            confirmed = await segue.channel(publisher_confirms=True)
            boundary = ConsumeBoundary(
                ConfirmedPublisher(confirmed),
                self._names.segue.dead_exchange,
                is_transient=is_transient,
            )
            clients = ClientPublisher(
                await omotes.channel(publisher_confirms=True), self._names.exchange
            )
            queues = await self._declare(segue, omotes)
            consumers = self._consumers(queues, boundary)
            running = _Running(
                pool,
                OmotesInputs(pool),
                OmotesOutputs(pool),
                segue,
                omotes,
                ConfirmedPublisher(confirmed, user_id=self._user),
                clients,
                consumers,
            )
            self._running = running
            stack.callback(self._forget_running)
            for consumer in consumers:
                await consumer.start()
                stack.push_async_callback(consumer.stop, DRAIN_TIMEOUT_S)
            await self._offer_workflows(log_left_out=True)
            omotes.reconnect_callbacks.add(self._on_reconnect)
            stack.pop_all()
        self._spawn(self._purge_orphans(running.inputs), "omotes-purge")
        self._log.info(
            "omotes_gateway_started",
            gateway_id=self._names.gateway_id,
            updates_queue=self._names.updates_queue,
            workflows=len(self._catalog),
        )

    def _forget_running(self) -> None:
        self._running = None

    async def stop(self) -> None:
        """Stop consuming (finishing what was delivered) and close the connections."""
        running = self._running
        if running is None:
            return
        running.omotes.reconnect_callbacks.discard(self._on_reconnect)
        left = await asyncio.gather(
            *(consumer.stop(DRAIN_TIMEOUT_S) for consumer in running.consumers)
        )
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running = None
        await running.omotes.close()
        await running.segue.close()
        await running.pool.close()
        self._log.info("omotes_gateway_stopped", messages_in_flight=sum(left))

    def use_catalog(self, catalog: Catalog) -> None:
        """Serve new submissions from ``catalog`` and offer it to every OMOTES client."""
        self._catalog = catalog
        if self._running is not None:
            self._spawn(self._offer_workflows(log_left_out=True), "omotes-offer")

    async def _declare(
        self, segue: AbstractRobustConnection, omotes: AbstractRobustConnection
    ) -> dict[str, AbstractQueue]:
        """Declare the OMOTES side as the SDK does, and the gateway's updates queue."""
        names, prefetch = self._names, self._settings.prefetch
        channel = await omotes.channel()
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.declare_exchange(
            names.exchange, ExchangeType.DIRECT, durable=False, auto_delete=False
        )
        queues: dict[str, AbstractQueue] = {}
        for name in (names.submissions_queue, names.deletions_queue):
            queues[name] = await channel.declare_queue(name, durable=True)
            await queues[name].bind(exchange, routing_key=name)
        requests = await channel.declare_queue(names.workflows_request_queue, exclusive=True)
        await requests.bind(exchange, routing_key=names.workflows_request_key)
        queues[names.workflows_request_queue] = requests
        updates_channel = await segue.channel()
        await updates_channel.set_qos(prefetch_count=prefetch)
        spec = QueueSpec(
            names.updates_queue,
            {**dead_letter_arguments(names.segue), "x-single-active-consumer": True},
            names.segue.updates_exchange,
            self._updates_key,
        )
        queues[names.updates_queue] = await declare_queue(updates_channel, spec)
        return queues

    def _consumers(
        self, queues: dict[str, AbstractQueue], boundary: ConsumeBoundary
    ) -> list[BatchConsumer]:
        names, batch = self._names, self._settings.max_batch
        return [
            BatchConsumer(queues[names.submissions_queue], boundary, self._on_submissions, batch),
            BatchConsumer(queues[names.deletions_queue], boundary, self._on_deletions, batch),
            BatchConsumer(
                queues[names.workflows_request_queue], boundary, self._on_requests, batch, workers=1
            ),
            # One at a time and in order: a job's updates are translated as they come.
            BatchConsumer(
                queues[names.updates_queue], boundary, self._on_updates, batch, workers=1
            ),
        ]

    # --- OMOTES client -> Segue ------------------------------------------------------------

    async def _on_submissions(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Store each job's inputs, then submit it; ack once the command is confirmed."""
        running = self._require_running()
        catalog = self._catalog
        outcomes: list[Outcome] = [Outcome.ack()] * len(messages)
        accepted: list[tuple[int, Submission]] = []
        answers: list[tuple[int, Refusal]] = []
        for index, message in enumerate(messages):
            read = read_submission(message.body, catalog, self._updates_key)
            if isinstance(read, Submission):
                accepted.append((index, read))
            elif read.answer is not None:
                answers.append((index, read))
            else:
                outcomes[index] = Outcome.dead(read.reason)
        await running.inputs.save(
            [OmotesInput(s.command.job_id, s.esdl, s.job_reference) for _, s in accepted]
        )
        results = await self._send_commands(running, [s.command for _, s in accepted])
        for (index, submission), result in zip(accepted, results, strict=True):
            outcomes[index] = result or Outcome.ack("omotes_job_submitted")
            self._log.info(
                "omotes_job_submitted" if result is None else "omotes_job_not_submitted",
                job_id=str(submission.command.job_id),
                workflow=submission.command.workflow,
            )
        for index, outcome in await self._answer(answers):
            outcomes[index] = outcome
        return await self._paused_if_requeued(outcomes)

    async def _on_deletions(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Cancel each job, then delete its stored ESDLs (as the OMOTES orchestrator
        deletes a deleted job's rows); ack once both are done. Nothing goes back to
        the client here: a job that ends cancelled says so through its updates."""
        running = self._require_running()
        outcomes: list[Outcome] = [Outcome.ack()] * len(messages)
        cancels: list[tuple[int, CancelJob]] = []
        for index, message in enumerate(messages):
            read = read_delete(message.body)
            if isinstance(read, Refusal):
                outcomes[index] = Outcome.dead(read.reason)
            else:
                cancels.append((index, read))
        results = await self._send_commands(running, [cancel for _, cancel in cancels])
        sent = [
            cancel.job_id
            for (_, cancel), result in zip(cancels, results, strict=True)
            if result is None
        ]
        forgotten = await self._forget_jobs(running, sent)
        for (index, cancel), result in zip(cancels, results, strict=True):
            outcomes[index] = result or forgotten or Outcome.ack("omotes_job_delete_sent")
            self._log.info("omotes_job_delete", job_id=str(cancel.job_id), sent=result is None)
        return await self._paused_if_requeued(outcomes)

    async def _forget_jobs(self, running: _Running, job_ids: Sequence[UUID]) -> Outcome | None:
        """Delete the stored input and output ESDLs of ``job_ids``; None once done, else
        what to do with the deletions (requeued when trying again may help; a
        lasting failure is logged, and retention deletes the rows later)."""
        if not job_ids:
            return None
        try:
            inputs = await running.inputs.delete(job_ids)
            outputs = await running.outputs.delete(job_ids)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                return self._requeue(f"stored ESDLs not deleted: {describe(exc)}")
            self._log.warning("omotes_esdls_not_deleted", jobs=len(job_ids), error=describe(exc))
            return None
        self._log.info("omotes_esdls_deleted", jobs=len(job_ids), inputs=inputs, outputs=outputs)
        return None

    async def _on_requests(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Answer every ``RequestAvailableWorkflows`` of the batch with one offer."""
        outcomes: list[Outcome] = []
        for message in messages:
            try:
                parse(RequestAvailableWorkflows, message.body)
            except WireError as exc:
                outcomes.append(Outcome.dead(str(exc)))
            else:
                outcomes.append(Outcome.ack("omotes_workflows_requested"))
        if any(outcome.verdict is Verdict.ACK for outcome in outcomes):
            try:
                await self._offer_workflows(log_left_out=False)
            except PublishError as exc:
                outcomes = [
                    self._requeue(str(exc)) if outcome.verdict is Verdict.ACK else outcome
                    for outcome in outcomes
                ]
        return outcomes

    async def _send_commands(
        self, running: _Running, commands: Sequence[SubmitJob | CancelJob]
    ) -> list[Outcome | None]:
        """Publish each command confirmed; None per confirmed one, else what to do with
        the message it came from (requeue when trying again may help)."""
        results = await asyncio.gather(
            *(
                running.sender.publish(
                    Outgoing(
                        exchange=self._names.segue.commands_exchange,
                        routing_key=self._names.segue.commands_queue,
                        body=encode(command),
                        message_id=uuid4().hex,
                    )
                )
                for command in commands
            ),
            return_exceptions=True,
        )
        outcomes: list[Outcome | None] = []
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
            if result is None:
                outcomes.append(None)
            elif is_transient(result):
                outcomes.append(self._requeue(f"command not confirmed: {describe(result)}"))
            else:
                outcomes.append(Outcome.dead(f"command refused: {describe(result)}"))
        return outcomes

    # --- Segue -> OMOTES client ------------------------------------------------------------

    async def _on_updates(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        """Translate each update and publish what it becomes; ack once confirmed.

        The messages of one job go out one after the other, each once the one
        before is confirmed (``CANCELLED`` status before the result, ``RUNNING``
        before anything else); different jobs' at the same time.
        """
        outcomes: list[Outcome] = [Outcome.ack()] * len(messages)
        by_job: dict[UUID, list[tuple[int, Update, list[ToClient]]]] = defaultdict(list)
        for index, message in enumerate(messages):
            try:
                update = decode(UPDATE_ADAPTER, message.body, self._settings.max_message_bytes)
            except InvalidMessageError as exc:
                outcomes[index] = Outcome.dead(f"invalid update: {exc.reason}")
                continue
            translation = self._translator.translate(update)
            if translation.dropped is not None:
                outcomes[index] = Outcome.ack("omotes_update_dropped", translation.dropped)
            else:
                by_job[update.job_id].append((index, update, translation.messages))
        for sent in await asyncio.gather(*(self._send_in_order(plan) for plan in by_job.values())):
            for index, outcome in sent:
                outcomes[index] = outcome
        return await self._paused_if_requeued(outcomes)

    async def _send_in_order(
        self, plan: Sequence[tuple[int, Update, list[ToClient]]]
    ) -> list[tuple[int, Outcome]]:
        """Publish one job's messages in order; from the first that fails on, the
        updates go back to the queue (and the job is translated afresh)."""
        clients = self._require_running().clients
        outcomes: list[tuple[int, Outcome]] = []
        failure: str | None = None
        for index, update, messages in plan:
            for message in messages if failure is None else ():
                try:
                    await self._publish(clients, message)
                except (PublishError, OutputReadError, *CONNECTION_EXCEPTIONS) as exc:
                    failure = f"OMOTES message not sent: {describe(exc)}"
                    self._translator.forget(update.job_id)
                    break
            if failure is None:
                outcomes.append((index, Outcome.ack("omotes_update_sent", update.type)))
            else:
                outcomes.append((index, self._requeue(failure)))
        return outcomes

    async def _publish(self, clients: ClientPublisher, message: ToClient) -> None:
        """Publish ``message``, completed with its stored output ESDL if it waits for one
        (a few at a time, so large ESDLs do not all sit in memory at once)."""
        ref, result = message.esdl_ref, message.message
        if ref is None or not isinstance(result, JobResult):
            await clients.publish(message.routing_key, message.body())
            return
        async with self._output_esdls:
            complete = await self._with_output_esdl(message, ref, UUID(result.uuid))
            await clients.publish(complete.routing_key, complete.body())

    async def _with_output_esdl(
        self, message: ToClient, ref: OutputEsdlRef, job_id: UUID
    ) -> ToClient:
        """``message`` with its output ESDL read from ``omotes_outputs``, or the
        ``ERROR`` result saying why it cannot have it. Raises :class:`OutputReadError`
        when the database is away for now (the update is handled again later)."""
        try:
            stored = await self._require_running().outputs.get(job_id, ref.attempt_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise OutputReadError(f"output ESDL not read: {describe(exc)}") from exc
            complete = output_unreadable(message, describe(exc))
        else:
            complete = with_output_esdl(message, stored)
        where = {"job_id": str(job_id), "attempt_id": str(ref.attempt_id), "bytes": ref.size}
        sent = complete.message
        if isinstance(sent, JobResult) and sent.result_type == JobResult.SUCCEEDED:
            self._log.info("omotes_output_esdl_read", **where)
        else:
            self._log.warning("omotes_output_esdl_unusable", **where)
        return complete

    async def _answer(self, refusals: Sequence[tuple[int, Refusal]]) -> list[tuple[int, Outcome]]:
        """Tell each refused submission's client why (``JobResult ERROR``), then park the
        submission with the reason; hand it back if the answer was not confirmed."""
        answers = [(r.answer.routing_key, r.answer.body()) for _, r in refusals if r.answer]
        sent = await self._require_running().clients.publish_all(answers)
        return [
            (index, Outcome.dead(refusal.reason) if ok else self._requeue(refusal.reason))
            for (index, refusal), ok in zip(refusals, sent, strict=True)
        ]

    async def _offer_workflows(self, log_left_out: bool) -> None:
        """Publish ``AvailableWorkflows`` to every OMOTES client (raises PublishError)."""
        offer = available_workflows(self._catalog)
        if log_left_out:
            for reason in offer.left_out:
                self._log.warning("omotes_workflow_not_offered", reason=reason)
        running = self._require_running()
        await running.clients.publish(self._names.workflows_key, offer.message.SerializeToString())
        self._log.info("omotes_workflows_offered", workflows=len(offer.message.workflows))

    def _on_reconnect(self, _connection: object) -> None:
        """Clients that started while the gateway was away asked nobody: offer again."""
        self._spawn(self._offer_workflows(log_left_out=False), "omotes-offer")

    # --- background -----------------------------------------------------------------------

    async def _purge_orphans(self, inputs: OmotesInputs) -> None:
        """Delete stored inputs whose job is gone, now and then."""
        while True:
            try:
                cutoff = self._clock() - ORPHAN_GRACE
                while await inputs.purge_orphans(cutoff) > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again
                self._log.warning("omotes_purge_failed", error=describe(exc))
            await asyncio.sleep(self._settings.retention_interval_s)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(self._logged(coroutine), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _logged(self, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.warning("omotes_background_failed", error=describe(exc))

    # --- helpers ---------------------------------------------------------------------------

    def _requeue(self, reason: str) -> Outcome:
        return Outcome(Verdict.REQUEUE, reason, "omotes_requeued")

    async def _paused_if_requeued(self, outcomes: list[Outcome]) -> list[Outcome]:
        """``outcomes``, after a pause if any message goes back (no hot retry loop)."""
        if any(outcome.verdict is Verdict.REQUEUE for outcome in outcomes):
            await asyncio.sleep(REQUEUE_PAUSE_S)
        return outcomes

    def _require_running(self) -> _Running:
        if self._running is None:
            raise RuntimeError("the OMOTES gateway is not running")
        return self._running
