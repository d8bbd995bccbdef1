"""Declare the topology specs of :mod:`segue.protocol.topology` with aio-pika."""

from __future__ import annotations

from collections.abc import Iterable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from segue.protocol.names import Names
from segue.protocol.topology import (
    ExchangeSpec,
    QueueSpec,
    exchanges,
    orchestrator_queues,
    task_queue,
)


async def declare_exchanges(channel: AbstractChannel, names: Names) -> dict[str, AbstractExchange]:
    """Declare every exchange of the installation; returns them by name."""
    return {spec.name: await _declare_exchange(channel, spec) for spec in exchanges(names)}


async def declare_queue(channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    """Declare a durable queue and its binding, if it has one."""
    queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
    if spec.bind_exchange is not None:
        await queue.bind(spec.bind_exchange, routing_key=spec.routing_key or "")
    return queue


async def declare_orchestrator_topology(
    channel: AbstractChannel, names: Names, step_queues: Iterable[str]
) -> dict[str, AbstractQueue]:
    """Everything the orchestrator needs: exchanges, its queues and all task queues.

    Task queues are declared here too, so a task published before any worker
    started is kept rather than dropped as unroutable.
    """
    await declare_exchanges(channel, names)
    specs = [*orchestrator_queues(names), *(task_queue(names, q) for q in sorted(step_queues))]
    return {spec.name: await declare_queue(channel, spec) for spec in specs}


async def _declare_exchange(channel: AbstractChannel, spec: ExchangeSpec) -> AbstractExchange:
    return await channel.declare_exchange(
        spec.name, aio_pika.ExchangeType(spec.kind.value), durable=True
    )
