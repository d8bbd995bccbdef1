"""Declare the topology specs of :mod:`segue.protocol.topology` with aio-pika."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, AbstractRobustChannel
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

from segue.logs import library_logger
from segue.protocol.names import Names
from segue.protocol.topology import (
    DEFAULT_DEAD_LETTER_BOUNDS,
    DeadLetterBounds,
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
    """Declare a durable queue and its binding, if it has one.

    A queue with ``bounds`` that exists with other ones (e.g. declared by an
    older version, without any) is used as it is, and a warning says how to
    bound it: RabbitMQ refuses to change a queue's arguments, and an upgrade
    must not fail to start over it.
    """
    if spec.bounds is None:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
    else:
        queue = await _declare_bounded(channel, spec, spec.bounds)
    if spec.bind_exchange is not None:
        await queue.bind(spec.bind_exchange, routing_key=spec.routing_key or "")
    return queue


async def ensure_queue(channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    """The queue as it is if it exists, else declared from ``spec``.

    For a process that needs a queue to exist but does not choose its bounds:
    a worker and the dead-letter queue, whose bounds are orchestrator settings.
    """
    try:
        return await _declare_existing(channel, spec.name)
    except ChannelNotFoundEntity:
        await channel.reopen()  # the broker closed the channel
    return await declare_queue(channel, spec)


async def declare_orchestrator_topology(
    channel: AbstractChannel,
    names: Names,
    step_queues: Iterable[str],
    dead_letter: DeadLetterBounds = DEFAULT_DEAD_LETTER_BOUNDS,
) -> dict[str, AbstractQueue]:
    """Everything the orchestrator needs: exchanges, its queues and all task queues.

    Task queues are declared here too, so a task published before any worker
    started is kept rather than dropped as unroutable.
    """
    await declare_exchanges(channel, names)
    specs = [
        *orchestrator_queues(names, dead_letter),
        *(task_queue(names, q) for q in sorted(step_queues)),
    ]
    return {spec.name: await declare_queue(channel, spec) for spec in specs}


async def _declare_exchange(channel: AbstractChannel, spec: ExchangeSpec) -> AbstractExchange:
    return await channel.declare_exchange(
        spec.name, aio_pika.ExchangeType(spec.kind.value), durable=True
    )


async def _declare_bounded(
    channel: AbstractChannel, spec: QueueSpec, bounds: dict[str, Any]
) -> AbstractQueue:
    try:
        return await channel.declare_queue(
            spec.name, durable=True, arguments={**spec.arguments, **bounds}
        )
    except ChannelPreconditionFailed as exc:
        refusal = str(exc)
    await channel.reopen()  # the broker closed the channel
    queue = await _declare_existing(channel, spec.name)
    library_logger("segue.topology").warning(
        "queue_bounds_not_applied",
        queue=spec.name,
        wanted=bounds,
        refusal=refusal,
        fix=_how_to_bound(spec.name, bounds),
    )
    return queue


async def _declare_existing(channel: AbstractChannel, name: str) -> AbstractQueue:
    """The existing queue ``name``, whatever its arguments (raises if there is none).

    Not redeclared after a reconnection: a queue deleted meanwhile (to declare
    it anew, with its bounds) must not stop the channel from coming back.
    """
    if isinstance(channel, AbstractRobustChannel):
        return await channel.declare_queue(name, passive=True, robust=False)
    return await channel.declare_queue(name, passive=True)


def _how_to_bound(name: str, bounds: dict[str, Any]) -> str:
    """What an operator can do about a queue whose bounds are not the wanted ones."""
    delete = (
        f"delete the queue (its messages are lost: `rabbitmqctl delete_queue {name}`) and "
        "restart, so that it is declared anew"
    )
    if not bounds:
        return f"no bounds are wanted: {delete}"
    policy = {key.removeprefix("x-"): value for key, value in bounds.items()}
    pattern = "^" + name.replace(".", "\\.") + "$"
    return (
        f"{delete}; or keep it and bound it with a policy: `rabbitmqctl set_policy "
        f"{name}-bounds '{pattern}' '{json.dumps(policy)}' --apply-to queues` (then set "
        "the bounds to 0 in the settings to stop this warning)"
    )
