"""Publishing with publisher confirms: a publish returns only once the broker has
taken responsibility for the message (and, for ``mandatory``, routed it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel, DeliveryMode

from segue.errors import SegueError

JSON_CONTENT_TYPE = "application/json"


class PublishError(SegueError):
    """The broker did not confirm a publish (e.g. the connection dropped)."""


@dataclass(frozen=True)
class Outgoing:
    """A message ready to publish."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    priority: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    mandatory: bool = False


class ConfirmedPublisher:
    """Publishes on one channel opened with publisher confirms."""

    def __init__(self, channel: AbstractChannel, confirm_timeout_s: float = 30.0) -> None:
        self._channel = channel
        self._confirm_timeout_s = confirm_timeout_s

    async def publish(self, message: Outgoing) -> None:
        """Publish and wait for the broker's confirm; raises if it is refused.

        An empty exchange name means the default exchange (routing key = queue).
        """
        try:
            await self._publish(message)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # aiormq cancels pending confirms when the connection drops.
            raise PublishError(
                f"connection lost before the broker confirmed {message.routing_key!r}"
            ) from None

    async def _publish(self, message: Outgoing) -> None:
        exchange = (
            self._channel.default_exchange
            if message.exchange == ""
            else await self._channel.get_exchange(message.exchange, ensure=False)
        )
        await exchange.publish(
            aio_pika.Message(
                message.body,
                content_type=JSON_CONTENT_TYPE,
                delivery_mode=DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                priority=message.priority,
                headers=dict(message.headers),
                reply_to=message.reply_to,
                correlation_id=message.correlation_id,
            ),
            routing_key=message.routing_key,
            mandatory=message.mandatory,
            timeout=self._confirm_timeout_s,
        )
