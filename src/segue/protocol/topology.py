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
    """A durable queue, optionally bound to an exchange.

    ``bounds`` are arguments that limit the queue (None: it has none to choose).
    They are settings, and RabbitMQ cannot change the arguments of an existing
    queue, so a queue that exists without them (or with others) is used as it
    is, with a warning, rather than refused.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bind_exchange: str | None = None
    routing_key: str | None = None
    bounds: dict[str, Any] | None = None


DEFAULT_DEAD_LETTER_MAX_LENGTH = 100_000
DEFAULT_DEAD_LETTER_TTL_DAYS = 14.0
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class DeadLetterBounds:
    """How much the dead-letter queue keeps: the newest ``max_length`` messages
    (the oldest are dropped first), each for at most ``ttl_days``; 0 is no bound."""

    max_length: int = DEFAULT_DEAD_LETTER_MAX_LENGTH
    ttl_days: float = DEFAULT_DEAD_LETTER_TTL_DAYS

    def arguments(self) -> dict[str, Any]:
        """The queue arguments that impose these bounds."""
        arguments: dict[str, Any] = {}
        if self.max_length > 0:
            arguments["x-max-length"] = self.max_length
            arguments["x-overflow"] = "drop-head"
        if self.ttl_days > 0:
            arguments["x-message-ttl"] = round(self.ttl_days * MS_PER_DAY)
        return arguments


DEFAULT_DEAD_LETTER_BOUNDS = DeadLetterBounds()


def exchanges(names: Names) -> list[ExchangeSpec]:
    """Every exchange of an installation."""
    return [
        ExchangeSpec(names.commands_exchange, ExchangeKind.DIRECT),
        ExchangeSpec(names.events_exchange, ExchangeKind.DIRECT),
        ExchangeSpec(names.tasks_exchange, ExchangeKind.DIRECT),
        ExchangeSpec(names.updates_exchange, ExchangeKind.TOPIC),
        ExchangeSpec(names.control_exchange, ExchangeKind.TOPIC),
        ExchangeSpec(names.dead_exchange, ExchangeKind.FANOUT),
    ]


def dead_letter_arguments(names: Names) -> dict[str, Any]:
    """Queue arguments that send rejected messages to the dead-letter exchange."""
    return {"x-dead-letter-exchange": names.dead_exchange}


def orchestrator_queues(
    names: Names, dead_letter: DeadLetterBounds = DEFAULT_DEAD_LETTER_BOUNDS
) -> list[QueueSpec]:
    """Queues the orchestrator consumes, plus the dead-letter queue."""
    return [
        QueueSpec(
            names.commands_queue,
            dead_letter_arguments(names),
            names.commands_exchange,
            names.commands_queue,
        ),
        QueueSpec(
            names.events_queue,
            dead_letter_arguments(names),
            names.events_exchange,
            names.events_queue,
        ),
        QueueSpec(names.dead_queue, {}, names.dead_exchange, "", dead_letter.arguments()),
    ]


def task_queue(names: Names, step_queue: str) -> QueueSpec:
    """The priority queue of one task type, bound to the tasks exchange."""
    return QueueSpec(
        names.task_queue(step_queue),
        {**dead_letter_arguments(names), "x-max-priority": MAX_PRIORITY},
        names.tasks_exchange,
        step_queue,
    )
