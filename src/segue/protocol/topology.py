"""The RabbitMQ topology as pure data: what to declare, with which arguments.

Every participant (orchestrator, workers, clients) declares what it uses from
these specs, so the arguments always agree (RabbitMQ refuses a redeclaration
with different arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from segue.protocol.names import MAX_PRIORITY, Names


class ExchangeKind(StrEnum):
    """AMQP exchange types Segue uses."""

    DIRECT = "direct"
    TOPIC = "topic"
    FANOUT = "fanout"


@dataclass(frozen=True)
class ExchangeSpec:
    """A durable exchange."""

    name: str
    kind: ExchangeKind


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue, optionally bound to an exchange."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bind_exchange: str | None = None
    routing_key: str | None = None


def exchanges(names: Names) -> list[ExchangeSpec]:
    """Every exchange of an installation."""
    return [
        ExchangeSpec(names.tasks_exchange, ExchangeKind.DIRECT),
        ExchangeSpec(names.updates_exchange, ExchangeKind.TOPIC),
        ExchangeSpec(names.control_exchange, ExchangeKind.TOPIC),
        ExchangeSpec(names.dead_exchange, ExchangeKind.FANOUT),
    ]


def dead_letter_arguments(names: Names) -> dict[str, Any]:
    """Queue arguments that send rejected messages to the dead-letter exchange."""
    return {"x-dead-letter-exchange": names.dead_exchange}


def orchestrator_queues(names: Names) -> list[QueueSpec]:
    """Queues the orchestrator consumes, plus the dead-letter queue."""
    return [
        QueueSpec(names.commands_queue, dead_letter_arguments(names)),
        QueueSpec(names.events_queue, dead_letter_arguments(names)),
        QueueSpec(names.dead_queue, {}, names.dead_exchange, ""),
    ]


def task_queue(names: Names, step_queue: str) -> QueueSpec:
    """The priority queue of one task type, bound to the tasks exchange."""
    return QueueSpec(
        names.task_queue(step_queue),
        {**dead_letter_arguments(names), "x-max-priority": MAX_PRIORITY},
        names.tasks_exchange,
        step_queue,
    )
