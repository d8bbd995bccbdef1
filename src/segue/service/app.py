"""The composition root: builds the orchestrator from settings and runs it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from aio_pika.abc import AbstractQueue

from segue.broker.boundary import ConsumeBoundary
from segue.broker.connection import connect
from segue.broker.publisher import ConfirmedPublisher
from segue.broker.topology import declare_orchestrator_topology
from segue.protocol.names import Names
from segue.service.applier import Applier
from segue.service.handlers import Handlers
from segue.service.health import HealthMonitor, HealthServer
from segue.service.metrics import Metrics
from segue.service.relay import OutboxRelay
from segue.service.sweeper import run_sweeper
from segue.settings import Settings
from segue.store.migrate import upgrade_database
from segue.store.repository import Store
from segue.workflows.loader import load_workflows

DRAIN_TIMEOUT_S = 30.0


def utc_now() -> datetime:
    """The service clock (the engine never reads a clock itself)."""
    return datetime.now(UTC)


async def run_service(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Run the orchestrator until ``stop`` is set; ``ready`` is set once consuming."""
    log = structlog.get_logger("segue.service")
    catalog = load_workflows(settings.workflow_config)
    names = Names(settings.namespace)
    log.info("service_starting", settings=settings.safe_dict(), workflows=list(catalog.names))
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade_database, settings.database_url)
    store = await Store.connect(settings.database_url, pool_size=settings.db_pool_size)
    connection = await connect(settings.amqp_url, "segue-orchestrator")
    background: list[asyncio.Task[None]] = []
    http: HealthServer | None = None
    try:
        publisher = ConfirmedPublisher(await connection.channel(publisher_confirms=True))
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=settings.prefetch)
        queues = await declare_orchestrator_topology(consume_channel, names, catalog.queues())
        relay = OutboxRelay(
            store, publisher, clock, settings.relay_interval_s, settings.relay_grace_s
        )
        applier = Applier(store, relay, names, clock)
        handlers = Handlers(
            applier, store, catalog, publisher, names, clock, settings.max_message_bytes
        )
        metrics = Metrics()
        boundary = ConsumeBoundary(publisher, names.dead_exchange, observer=metrics.observe)
        monitor = HealthMonitor(store, connection, metrics)
        await monitor.probe()
        http = HealthServer(monitor, metrics, settings.http_host, settings.http_port)
        http.start()
        background = [
            asyncio.create_task(relay.run(), name="outbox-relay"),
            asyncio.create_task(run_sweeper(applier, settings.sweep_interval_s), name="sweeper"),
            asyncio.create_task(monitor.run(), name="health-monitor"),
        ]
        consumers = [
            (queue, await queue.consume(boundary.wrap(queue.name, handler)))
            for queue, handler in (
                (queues[names.commands_queue], handlers.on_command),
                (queues[names.events_queue], handlers.on_event),
            )
        ]
        log.info("service_ready", namespace=names.namespace, http_port=http.port)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("service_stopping")
        await _stop_consuming(consumers)
        remaining = await boundary.drain(DRAIN_TIMEOUT_S)
        if remaining:
            log.warning("service_stopped_with_messages_in_flight", messages=remaining)
    finally:
        if http is not None:
            http.stop()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await connection.close()
        await store.close()
        log.info("service_stopped")


async def _stop_consuming(consumers: list[tuple[AbstractQueue, str]]) -> None:
    for queue, tag in consumers:
        with contextlib.suppress(Exception):
            await queue.cancel(tag)
