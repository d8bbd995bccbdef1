"""The Celery side of the bridge on RabbitMQ (vhost ``omotes_celery``): task queues,
task messages and Celery's remote control, over aio-pika.

What is declared, and why exactly so (a declaration with other flags or
arguments than the existing entity's is refused by RabbitMQ and closes the
channel):

- per task type ``<name>``: the durable queue ``<name>`` with exactly
  ``x-max-priority: 10``, as the OMOTES SDK worker declares it, bound to the
  durable direct exchange ``<name>`` with routing key ``<name>``, as the OMOTES
  orchestrator's Celery (kombu) declares it. Tasks are published to the
  default exchange with routing key ``<name>``, as Celery does.
- the remote-control exchanges ``celery.pidbox`` (fanout) and
  ``reply.celery.pidbox`` (direct), both not durable, as kombu declares them;
  and a reply queue of the bridge's own (exclusive), bound to the reply
  exchange with a routing key of its own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from uuid import uuid4

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pamqp.commands import Basic

from segue.broker.publisher import PERSISTENT, TRANSIENT, PublishError
from segue.logs import library_logger
from segue.omotes.celery_wire import (
    PIDBOX_EXCHANGE,
    REPLY_EXCHANGE,
    TASK_QUEUE_ARGUMENTS,
    AmqpMessage,
    CeleryWireError,
    active_command,
    active_task_ids,
    revoke_command,
)

CONFIRM_TIMEOUT_S = 30.0
COMMAND_LIFETIME_S = 10
"""How long a remote-control command stays valid (its ``expires``)."""


class CeleryBroker:
    """Publishes Celery tasks and remote-control commands on one confirmed channel.

    ``origin`` names the bridge in the task messages; ``wall_clock`` gives POSIX
    seconds (the ``expires`` of commands).
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        origin: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._connection = connection
        self._origin = origin
        self._wall_clock = wall_clock
        self._channel: AbstractChannel | None = None
        self._reply_key = str(uuid4())
        self._clock = 0
        self._answers: dict[str, set[str]] = {}
        self._inspect_lock = asyncio.Lock()
        self._log = library_logger("segue.omotes")

    @property
    def origin(self) -> str:
        """How the task messages name their sender."""
        return self._origin

    async def open(self) -> None:
        """Open the channel, declare the remote-control exchanges and the reply queue."""
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.declare_exchange(PIDBOX_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=False)
        replies = await channel.declare_exchange(
            REPLY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=False
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(replies, routing_key=self._reply_key)
        await queue.consume(self._on_answer, no_ack=True)
        self._channel = channel

    async def declare_task_queue(self, name: str) -> None:
        """Declare the queue of task type ``name`` and its exchange (see the module)."""
        channel = self._require_channel()
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(
            name, durable=True, arguments=dict(TASK_QUEUE_ARGUMENTS)
        )
        await queue.bind(exchange, routing_key=name)

    async def send_task(self, name: str, message: AmqpMessage) -> None:
        """Publish a task to the queue of task type ``name``; raises :class:`PublishError`
        unless the broker confirmed it (and routed it: the queue must exist)."""
        await self._publish("", name, message, mandatory=True)

    async def revoke(self, task_id: str) -> None:
        """Tell every worker to revoke ``task_id``, terminating it if it runs (SIGTERM)."""
        command = revoke_command(task_id, self._tick(), self._expires())
        await self._publish(PIDBOX_EXCHANGE, "", command, mandatory=False)

    async def active_tasks(self, window_s: float) -> set[str]:
        """The ids of the tasks the workers run now: every answer to ``active`` that
        arrives within ``window_s`` (a worker that does not answer in time counts
        as running nothing)."""
        async with self._inspect_lock:
            ticket = str(uuid4())
            self._answers[ticket] = set()
            try:
                command = active_command(ticket, self._reply_key, self._tick(), self._expires())
                await self._publish(PIDBOX_EXCHANGE, "", command, mandatory=False)
                await asyncio.sleep(window_s)
                return self._answers[ticket]
            finally:
                del self._answers[ticket]

    async def _on_answer(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        clock = headers.get("clock")
        if isinstance(clock, int):
            self._clock = max(self._clock, clock)
        answers = self._answers.get(str(headers.get("ticket")))
        if answers is None:
            return  # too late, or an answer to someone else's question
        try:
            answers.update(active_task_ids(message.body))
        except CeleryWireError as exc:
            self._log.warning("celery_answer_invalid", reason=str(exc))

    async def _publish(
        self, exchange: str, routing_key: str, message: AmqpMessage, mandatory: bool
    ) -> None:
        channel = await self._require_channel().get_underlay_channel()
        properties = Basic.Properties(
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=PERSISTENT if message.persistent else TRANSIENT,
            priority=message.priority,
            correlation_id=message.correlation_id,
            headers=message.headers,  # None, lists and tables are AMQP field values too
        )
        try:
            confirmation = await channel.basic_publish(
                message.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                timeout=CONFIRM_TIMEOUT_S,
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise PublishError(
                f"connection lost before the broker confirmed {routing_key!r}"
            ) from None
        if not isinstance(confirmation, Basic.Ack):
            where = f"exchange {exchange!r}, routing key {routing_key!r}"
            raise PublishError(f"the broker did not take the message ({where}): {confirmation!r}")

    def _tick(self) -> int:
        """The next value of the logical clock kombu's mailboxes keep."""
        self._clock += 1
        return self._clock

    def _expires(self) -> int:
        return math.ceil(self._wall_clock()) + COMMAND_LIFETIME_S

    def _require_channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("CeleryBroker.open() was not called")
        return self._channel
