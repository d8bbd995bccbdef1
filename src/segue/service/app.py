"""The composition root: builds the orchestrator from settings and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection

from segue.broker.acks import BatchAcks
from segue.broker.batching import BatchConsumer
from segue.broker.boundary import ConsumeBoundary
from segue.broker.connection import connect
from segue.broker.depths import QueueDepths
from segue.broker.publisher import ConfirmedPublisher
from segue.broker.topology import declare_orchestrator_topology, declare_queue
from segue.errors import ConfigurationError
from segue.omotes.bridge import CeleryBridge
from segue.omotes.gateway import OmotesGateway
from segue.protocol.names import Names
from segue.protocol.topology import task_queue
from segue.service.applier import Applier
from segue.service.failures import is_transient
from segue.service.handlers import Handlers
from segue.service.health import HealthMonitor, HealthServer
from segue.service.lag import Backlog, EventsHorizon, share_horizon
from segue.service.metrics import Metrics
from segue.service.relay import OutboxRelay
from segue.service.retention import Retention, run_retention
from segue.service.sampler import Sampler
from segue.service.scheduler import Scheduler
from segue.service.sweeper import run_sweeper
from segue.settings import Settings
from segue.store.migrate import upgrade_database
from segue.store.repository import Store
from segue.store.stats import Stats
from segue.web.app import build_web_app
from segue.workflows.loader import load_workflows

DRAIN_TIMEOUT_S = 30.0


def utc_now() -> datetime:
    """The service clock (the engine never reads a clock itself)."""
    return datetime.now(UTC)


@dataclass
class Parts:
    """What a running orchestrator is made of."""

    store: Store
    connection: AbstractRobustConnection
    channel: AbstractChannel
    queues: dict[str, AbstractQueue]
    handlers: Handlers
    boundary: ConsumeBoundary
    http: HealthServer
    background: list[asyncio.Task[None]]
    max_batch: int
    horizon: EventsHorizon
    events_backlog: EventsBacklog
    omotes: OmotesGateway | None = None
    celery_bridge: CeleryBridge | None = None
    scheduler: Scheduler | None = None


class EventsBacklog:
    """What worker events wait: ready in the broker (asked on a channel of its own,
    with a passive declare), and those the events consumer holds or gave back."""

    def __init__(self, connection: AbstractRobustConnection, queue: str) -> None:
        self._connection = connection
        self._queue = queue
        self._channel: AbstractChannel | None = None
        self.consumer: BatchConsumer | None = None

    async def __call__(self) -> Backlog:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        # Straight to the channel underneath: a robust channel would redeclare it later.
        underlay = await self._channel.get_underlay_channel()
        declared = await underlay.queue_declare(self._queue, passive=True)
        ready = declared.message_count or 0
        consumers = declared.consumer_count
        if self.consumer is None:
            return Backlog(ready, 0, consumers=consumers)
        if ready == 0:
            self.consumer.forget_returned()
        held, oldest, known = self.consumer.held()
        return Backlog(ready, held, oldest, known, consumers)


async def run_service(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utc_now,
    reload: asyncio.Event | None = None,
) -> None:
    """Run the orchestrator until ``stop`` is set; ``ready`` is set once consuming.

    Setting ``reload`` (SIGHUP in ``segue serve``) reloads the workflow file:
    new submissions use the new definitions, running jobs keep the ones they
    pinned; an invalid file is refused and the old definitions stay.
    """
    log = structlog.get_logger("segue.service")
    names = Names(settings.namespace)
    async with _assembled(settings, names, clock) as parts:
        if reload is not None:
            parts.background.append(_spawn(_reload_on(reload, settings, names, parts), "reload"))
        # The two consumers share their channel, so they share its acknowledgements.
        acks = BatchAcks()
        consumers = [
            # Batches of commands overlap, but those that share a job take turns in
            # the order they arrived (see segue.service.turns).
            BatchConsumer(
                parts.queues[names.commands_queue],
                parts.boundary,
                parts.handlers.on_commands,
                parts.max_batch,
                acks=acks,
            ),
            BatchConsumer(
                parts.queues[names.events_queue],
                parts.boundary,
                parts.handlers.on_events,
                parts.max_batch,
                acks=acks,
            ),
        ]
        parts.events_backlog.consumer = consumers[1]
        for consumer in consumers:
            await consumer.start()
        parts.horizon.consuming()
        log.info("service_ready", namespace=names.namespace, http_port=parts.http.port)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("service_stopping")
        remaining = sum(
            await asyncio.gather(*(consumer.stop(DRAIN_TIMEOUT_S) for consumer in consumers))
        )
        parts.horizon.stopped()
        if remaining:  # its row covers the events given back until a drain releases it
            log.warning("service_stopped_with_messages_in_flight", messages=remaining)
        else:
            with contextlib.suppress(Exception):  # it is released by a drain otherwise
                await parts.store.withdraw_horizon(replica_id())
    log.info("service_stopped")


@contextlib.asynccontextmanager
async def _assembled(
    settings: Settings, names: Names, clock: Callable[[], datetime]
) -> AsyncIterator[Parts]:
    """Build every part, yield them, and take them down in reverse order."""
    catalog = load_workflows(settings.workflow_config)
    structlog.get_logger("segue.service").info(
        "service_starting", settings=settings.safe_dict(), workflows=list(catalog.names)
    )
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade_database, settings.database_url)
    async with contextlib.AsyncExitStack() as stack:
        store = await Store.connect(settings.database_url, pool_size=settings.db_pool_size)
        stack.push_async_callback(store.close)
        for loaded in catalog:
            store.definitions.offer(loaded.content_hash, loaded.workflow)
        connection = await connect(settings.amqp_url, "segue-orchestrator")
        stack.push_async_callback(connection.close)
        publisher = ConfirmedPublisher(await connection.channel(publisher_confirms=True))
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=settings.prefetch)
        queues = await declare_orchestrator_topology(
            channel, names, catalog.queues(), settings.dead_letter_bounds
        )
        metrics = Metrics()
        relay = OutboxRelay(
            store,
            publisher,
            clock,
            settings.relay_interval_s,
            settings.relay_grace_s,
            on_quarantine=metrics.outbox_quarantined.inc,
        )
        events_backlog = EventsBacklog(connection, names.events_queue)
        horizon = EventsHorizon(clock, settings.max_event_lag_s, events_backlog)
        metrics.events_lag.set_function(horizon.lag_s)
        applier = Applier(
            store,
            relay,
            names,
            clock,
            is_transient,
            horizon=horizon,
            horizon_floor=horizon.floor,
            on_swept=metrics.deadline_lag.set,
            on_timer_failed=metrics.timer_failures.inc,
            on_written=metrics.operator.observe_writes,
        )
        handlers = Handlers(
            applier,
            store,
            catalog,
            publisher,
            names,
            clock,
            settings.max_message_bytes,
            admins=settings.admin_users,
            horizon=horizon,
        )
        monitor = HealthMonitor(store, connection, metrics)
        await monitor.probe()
        web = build_web_app(settings.database_url, clock) if settings.web_enabled else None
        if web is not None:
            stack.callback(web.close)  # after the server below has stopped
        http = HealthServer(monitor, metrics, settings.http_host, settings.http_port, web=web)
        http.start()
        stack.callback(http.stop)
        retention = _retention(settings, store, metrics, clock)
        scheduler = Scheduler(store, applier, catalog, clock, on_fired=metrics.operator.fired)
        sampler = Sampler(
            Stats(store),
            QueueDepths(connection),
            metrics.operator,
            names,
            lambda: scheduler.catalog.queues(),
            clock,
        )
        background = [
            _spawn(relay.run(), "outbox-relay"),
            _spawn(
                run_sweeper(
                    applier,
                    settings.sweep_interval_s,
                    partial(share_horizon, horizon, store, replica_id()),
                ),
                "sweeper",
            ),
            _spawn(run_retention(retention, settings.retention_interval_s), "retention"),
            _spawn(scheduler.run(settings.schedule_interval_s), "scheduler"),
            _spawn(sampler.run(settings.metrics_interval_s), "metrics-sampler"),
            _spawn(monitor.run(), "health-monitor"),
        ]
        stack.push_async_callback(_cancel_all, background)
        boundary = ConsumeBoundary(
            publisher, names.dead_exchange, observer=metrics.observe, is_transient=is_transient
        )
        omotes: OmotesGateway | None = None
        celery_bridge: CeleryBridge | None = None
        if settings.omotes_enabled:  # the OMOTES drop-in (docs/omotes.md)
            omotes = OmotesGateway(settings, names, catalog, clock)
            await omotes.start()
            stack.push_async_callback(omotes.stop)
            celery_bridge = CeleryBridge(settings, names, catalog, clock)
            await celery_bridge.start()
            stack.push_async_callback(celery_bridge.stop)
        yield Parts(
            store,
            connection,
            channel,
            queues,
            handlers,
            boundary,
            http,
            background,
            settings.max_batch,
            horizon,
            events_backlog,
            omotes,
            celery_bridge,
            scheduler,
        )


async def _reload_on(reload: asyncio.Event, settings: Settings, names: Names, parts: Parts) -> None:
    """Reload the workflow file each time ``reload`` is set."""
    log = structlog.get_logger("segue.service")
    while True:
        await reload.wait()
        reload.clear()
        try:
            catalog = await asyncio.to_thread(load_workflows, settings.workflow_config)
        except ConfigurationError as exc:
            log.error("workflows_reload_refused", error=str(exc))  # noqa: TRY400 - precise already
            continue
        for queue in sorted(catalog.queues()):
            await declare_queue(parts.channel, task_queue(names, queue))
        parts.handlers.use_catalog(catalog)
        if parts.scheduler is not None:
            parts.scheduler.use_catalog(catalog)
            await _store_schedules(parts.scheduler)
        if parts.omotes is not None:
            parts.omotes.use_catalog(catalog)
        if parts.celery_bridge is not None:
            await parts.celery_bridge.use_catalog(catalog)
        log.info("workflows_reloaded", workflows=list(catalog.names))


async def _store_schedules(scheduler: Scheduler) -> None:
    """Store the reloaded file's schedules (a database hiccup is logged, not fatal)."""
    try:
        await scheduler.store_file_schedules()
    except Exception as exc:
        log = structlog.get_logger("segue.service")
        log.warning("schedules_store_failed", error=str(exc))


def _retention(
    settings: Settings, store: Store, metrics: Metrics, clock: Callable[[], datetime]
) -> Retention:
    return Retention(
        store,
        timedelta(days=settings.retention_days),
        clock,
        count_jobs=metrics.jobs_pruned.inc,
        count_cancels=metrics.pending_cancels_pruned.inc,
        count_outbox=metrics.outbox_pruned.inc,
    )


def replica_id() -> str:
    """How this orchestrator process names itself among replicas."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _spawn(coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coroutine, name=name)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
