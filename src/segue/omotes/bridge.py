"""The Celery bridge: OMOTES Celery workers (``omotes_sdk.internal.worker``, SDK 4.x)
serve Segue steps unchanged.

To Segue the bridge is the worker of the OMOTES task types: it consumes their
Segue task queues (``<ns>.task.<type>``) and reports worker events. To the
Celery workers it is the OMOTES orchestrator: it publishes Celery tasks and
reads the workers' ``TaskProgressUpdate`` / ``TaskResult`` messages (vhost
``omotes_celery``). Engine and store are unchanged; the bridge is an edge.

- **Which queues**: ``SEGUE_OMOTES_TASK_TYPES`` (comma list), or when empty
  every queue of a workflow file in the legacy OMOTES format
  (:attr:`Catalog.legacy`, set by the loader: there workflow = step = queue =
  ``workflow_type_name``). A format-1 file with an empty setting gives the
  bridge nothing to serve.
- **Dispatch**: per Segue task, the Celery task of the same name with task id =
  attempt id (:mod:`segue.omotes.worker_translate`), the input ESDL and job
  reference from ``omotes_inputs``, the job priority (0..9) as the Celery
  priority. The Segue task is acknowledged once the Celery publish is
  confirmed; what the events need later is kept in ``omotes_tasks``
  (:mod:`segue.omotes.ledger`), so restarts and replicas lose nothing.
- **Events**: ``omotes_task_progress_events`` and ``omotes_task_result_events``
  (declared here: the SDK worker declares nothing) are each handled one
  message at a time, in order, so a task's STARTs are counted in the order the
  worker sent them. A succeeded task's output ESDL is stored in
  ``omotes_outputs`` before its ``StepSucceeded`` is reported, and the step
  output refers to it (:mod:`segue.omotes.store`). Events of tasks the bridge
  does not know are dropped with a log (Segue fences by attempt anyway); a
  START of one is revoked as well (a task nobody waits for any more must not
  run).
- **Liveness**: Celery workers send no heartbeats. Every second the bridge
  looks at the started tasks whose heartbeat is due (a third of the step's
  ``heartbeat_s``, at least a second) and asks the workers which tasks they
  run (Celery's ``inspect active`` over the remote control); each such task
  gets a ``StepHeartbeat``. A task whose worker is gone is not running
  anywhere, so Segue declares it lost after ``heartbeat_s``, counts a crash
  and dispatches it again. A worker process that dies mid-task (the OMOTES
  settings: acks late, reject on worker lost) has its task redelivered: the
  next START counts a crash. Either way ``max_crashes`` crashes fail the job.
- **Stops**: a Segue ``CancelAttempt`` of a task the bridge dispatched, with
  the digest of the attempt's token (checked as a Segue worker checks it), is
  a Celery revoke with ``terminate=True, signal=SIGTERM``, as OMOTES does, once
  the attempt is over in Segue (cancel, timeout, lost, the job ended: its
  status in ``step_attempts``, committed before the stop is published). A stop
  of an attempt that is still live is about an earlier run of its task (one
  that crashed, or whose report Segue got after the next run's START: the
  orchestrator handles event batches concurrently): that run is over, and
  revoking the task would kill the current one, so it is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from segue.broker.batching import BatchConsumer
from segue.broker.boundary import ConsumeBoundary, Outcome
from segue.broker.connection import connect
from segue.broker.publisher import ConfirmedPublisher
from segue.broker.topology import declare_queue
from segue.errors import ConfigurationError
from segue.omotes.celery_broker import CeleryBroker
from segue.omotes.celery_handlers import CeleryHandlers
from segue.omotes.ledger import TaskLedger
from segue.omotes.store import OmotesInputs, OmotesOutputs
from segue.protocol.messages import CancelAttempt
from segue.protocol.names import QUEUE_NAME_PATTERN, Names
from segue.protocol.topology import task_queue
from segue.service.failures import is_transient
from segue.settings import Settings
from segue.store.urls import asyncpg_dsn
from segue.worker.control import ControlListener
from segue.worker.reporter import EventReporter
from segue.workflows.loader import Catalog

POOL_SIZE = 4
"""Database connections of the bridge (opened as needed)."""
TASK_PREFETCH = 16
TASK_HANDLERS = 4
"""Segue tasks of one type dispatched at once."""
EVENT_PREFETCH = 32
RESULT_PREFETCH = 4
"""Results the bridge holds at once: each may carry an output ESDL of tens of MB."""
DRAIN_TIMEOUT_S = 10.0
WATCH_INTERVAL_S = 1.0
INSPECT_WINDOW_S = 1.0
"""How long the workers get to answer ``inspect active`` (Celery's own default)."""
PRUNE_INTERVAL_S = 60.0


def utc_now() -> datetime:
    """The bridge's default clock."""
    return datetime.now(UTC)


def omotes_task_types(setting: str, catalog: Catalog) -> frozenset[str]:
    """The step queues OMOTES Celery workers serve: ``setting`` (comma-separated), or
    when it is empty every queue of a legacy OMOTES workflow file.

    Raises :class:`ConfigurationError` for a name that cannot be a queue.
    """
    named = {name.strip() for name in setting.split(",") if name.strip()}
    for name in sorted(named):
        if not QUEUE_NAME_PATTERN.match(name):
            raise ConfigurationError(
                f"SEGUE_OMOTES_TASK_TYPES: {name!r} must match {QUEUE_NAME_PATTERN.pattern}"
            )
    if named:
        return frozenset(named)
    return frozenset(catalog.queues()) if catalog.legacy else frozenset()


class CeleryBridge:
    """Runs OMOTES Celery workers as the workers of Segue's OMOTES task types.

    Built by the composition root when ``SEGUE_OMOTES_ENABLED``;
    :meth:`start` once, :meth:`stop` once. Opens its own connections to both
    vhosts and a small database pool; the handlers are in
    :class:`~segue.omotes.celery_handlers.CeleryHandlers`.
    """

    def __init__(
        self,
        settings: Settings,
        names: Names,
        catalog: Catalog,
        clock: Callable[[], datetime] = utc_now,
        *,
        inspect_window_s: float = INSPECT_WINDOW_S,
    ) -> None:
        self._settings = settings
        self._names = names
        self._catalog = catalog
        self._clock = clock
        self._inspect_window_s = inspect_window_s
        self._types = omotes_task_types(settings.omotes_task_types, catalog)
        self._served: set[str] = set()
        self._stack = contextlib.AsyncExitStack()
        self._consumers: list[BatchConsumer] = []
        self._background: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger("segue.omotes.bridge")

    @property
    def task_types(self) -> frozenset[str]:
        """The step queues the bridge serves."""
        return self._types

    async def start(self) -> None:
        """Connect, declare what the bridge uses and start serving."""
        try:
            await self._open()
        except BaseException:
            await self._close(drain_s=0.0)
            raise
        self._log.info("omotes_bridge_started", task_types=sorted(self._types))
        if not self._types:
            self._log.warning(
                "omotes_bridge_idle",
                reason="no OMOTES task types: set SEGUE_OMOTES_TASK_TYPES or load a legacy "
                "OMOTES workflow file",
            )

    async def stop(self) -> None:
        """Stop taking tasks and events, finish those under way, close everything."""
        await self._close(DRAIN_TIMEOUT_S)
        self._log.info("omotes_bridge_stopped")

    async def _close(self, drain_s: float) -> None:
        for consumer in self._consumers:
            left = await consumer.stop(drain_s)
            if left:
                self._log.warning("omotes_messages_left", queue=consumer.name, messages=left)
        self._consumers.clear()
        await self._stack.aclose()

    async def use_catalog(self, catalog: Catalog) -> None:
        """Serve the workflows of a reloaded file too (new task types are served from
        now on; task types no longer in it stay served until a restart)."""
        self._catalog = self._handlers.catalog = catalog
        self._types = self._types | omotes_task_types(self._settings.omotes_task_types, catalog)
        for task_type in sorted(self._types - self._served):
            await self._serve(task_type)

    # --- assembly ----------------------------------------------------------------------

    async def _open(self) -> None:
        settings = self._settings
        pool = await asyncpg.create_pool(
            asyncpg_dsn(settings.database_url), min_size=0, max_size=POOL_SIZE
        )
        self._stack.push_async_callback(pool.close)
        segue = await self._connect(settings.amqp_url)
        celery = await self._connect(settings.omotes_celery_amqp_url)
        publisher = ConfirmedPublisher(await segue.channel(publisher_confirms=True))
        reporter = EventReporter(publisher, self._names.events_exchange, self._names.events_queue)
        self._stack.callback(reporter.close)
        self._boundary = ConsumeBoundary(
            publisher, self._names.dead_exchange, is_transient=is_transient
        )
        self._celery = CeleryBroker(celery, f"segue{os.getpid()}@{socket.gethostname()}")
        await self._celery.open()
        self._handlers = CeleryHandlers(
            TaskLedger(pool),
            OmotesInputs(pool),
            OmotesOutputs(pool),
            self._celery,
            reporter,
            self._catalog,
            self._clock,
            settings.max_message_bytes,
        )
        control = ControlListener(await segue.channel(), self._names.control_exchange, self._heard)
        await control.start()  # before any task is dispatched: no stop can be missed
        await self._consume_events(celery)
        self._tasks_channel = await self._channel(segue, TASK_PREFETCH)
        for task_type in sorted(self._types):
            await self._serve(task_type)
        self._spawn(self._watch(), "omotes-watch")
        self._stack.push_async_callback(self._cancel_background)

    async def _connect(self, url: str) -> AbstractRobustConnection:
        connection = await connect(url, "segue-omotes-bridge")
        self._stack.push_async_callback(connection.close)
        return connection

    @staticmethod
    async def _channel(connection: AbstractRobustConnection, prefetch: int) -> AbstractChannel:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def _consume_events(self, celery: AbstractRobustConnection) -> None:
        """Declare the workers' two event queues (durable, no arguments) and consume
        each one message at a time, in order (results on a channel of their own
        with a small prefetch: they may be large)."""
        handlers = {
            self._settings.omotes_progress_queue: (self._handlers.on_progress, EVENT_PREFETCH),
            self._settings.omotes_result_queue: (self._handlers.on_result, RESULT_PREFETCH),
        }
        for name, (handler, prefetch) in handlers.items():
            channel = await self._channel(celery, prefetch)
            queue = await channel.declare_queue(name, durable=True)
            await self._consume(BatchConsumer(queue, self._boundary, _one(_body(handler)), 1, 1))

    async def _serve(self, task_type: str) -> None:
        """Declare the Celery queue of ``task_type`` and consume its Segue task queue."""
        await self._celery.declare_task_queue(task_type)
        queue = await declare_queue(self._tasks_channel, task_queue(self._names, task_type))
        handler = _one(self._on_task)
        await self._consume(BatchConsumer(queue, self._boundary, handler, 1, TASK_HANDLERS))
        self._served.add(task_type)

    async def _consume(self, consumer: BatchConsumer) -> None:
        await consumer.start()
        self._consumers.append(consumer)

    async def _on_task(self, message: AbstractIncomingMessage) -> Outcome:
        return await self._handlers.on_task(message.body, message.priority or 0)

    def _heard(self, command: CancelAttempt) -> None:
        self._spawn(self._handlers.on_stop(command), f"omotes-stop-{command.attempt_id}")

    async def _watch(self) -> None:
        """Every second, heartbeats for started tasks the workers run; now and then,
        prune the ledger. A failure is logged and the next round tries again."""
        pruned_at = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                await self._handlers.beat(time.monotonic(), self._inspect_window_s)
                if time.monotonic() - pruned_at >= PRUNE_INTERVAL_S:
                    pruned_at = time.monotonic()
                    await self._handlers.prune()
            except Exception as exc:
                self._log.warning("omotes_watch_failed", error=f"{type(exc).__name__}: {exc}")

    # --- background tasks -----------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_background(self) -> None:
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


Handler = Callable[[AbstractIncomingMessage], Awaitable[Outcome]]


def _body(handler: Callable[[bytes], Awaitable[Outcome]]) -> Handler:
    """A message handler of a handler of bodies."""

    async def handle(message: AbstractIncomingMessage) -> Outcome:
        return await handler(message.body)

    return handle


def _one(
    handler: Handler,
) -> Callable[[Sequence[AbstractIncomingMessage]], Coroutine[Any, Any, list[Outcome]]]:
    """A batch handler of batches of one (the consumers take one message at a time)."""

    async def handle(messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        return [await handler(message) for message in messages]

    return handle
