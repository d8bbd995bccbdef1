"""Publishing with publisher confirms: a publish returns only once the broker has
taken responsibility for the message (and, for ``mandatory``, routed it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, cast

from aio_pika.abc import AbstractChannel, DeliveryMode
from pamqp.commands import Basic

from segue.errors import SegueError
from segue.protocol.envelope import Outgoing

JSON_CONTENT_TYPE = "application/json"
PERSISTENT = DeliveryMode.PERSISTENT.value
TRANSIENT = DeliveryMode.NOT_PERSISTENT.value
Properties = Basic.Properties

__all__ = ["JSON_CONTENT_TYPE", "ConfirmedPublisher", "Outgoing", "PublishError", "Publisher"]


class PublishError(SegueError):
    """The broker did not confirm a publish: the connection dropped, the broker
    refused it (``basic.nack``), or a ``mandatory`` message could not be routed."""


class Publisher(Protocol):
    """Sends messages and says which ones the broker took (the seam for fakes)."""

    async def publish(self, message: Outgoing) -> None:
        """Publish one message; raise :class:`PublishError` unless it is confirmed."""
        ...

    async def publish_all(self, messages: Sequence[Outgoing]) -> list[bool]:
        """Publish every message with all confirms in flight at once; True per confirmed one."""
        ...


class ConfirmedPublisher:
    """Publishes on one channel opened with publisher confirms.

    ``user_id``: stamped on every message. RabbitMQ refuses a message whose
    ``user_id`` is not the user of the connection, so the orchestrator can trust
    it as the author of a command (clients set it; see docs/security.md).
    """

    def __init__(
        self,
        channel: AbstractChannel,
        confirm_timeout_s: float = 30.0,
        user_id: str | None = None,
    ) -> None:
        self._channel = channel
        self._confirm_timeout_s = confirm_timeout_s
        self.user_id = user_id

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

    async def publish_all(self, messages: Sequence[Outgoing]) -> list[bool]:
        """Publish ``messages`` with their confirms overlapped; True for each confirmed one.

        Never raises for a refused message (the caller keeps what was not
        confirmed, e.g. in the outbox); cancellation of the caller propagates.
        """
        if not messages:
            return []
        results = await asyncio.gather(
            *(self.publish(message) for message in messages), return_exceptions=True
        )
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
        return [result is None for result in results]

    async def _publish(self, message: Outgoing) -> None:
        # Straight to the channel underneath (what aio-pika's Exchange.publish does
        # too), without building an aio_pika.Message for every publish.
        channel = await self._channel.get_underlay_channel()
        confirmation = await channel.basic_publish(
            message.body,
            exchange=message.exchange,
            routing_key=message.routing_key,
            properties=Properties(
                content_type=JSON_CONTENT_TYPE,
                delivery_mode=PERSISTENT if message.persistent else TRANSIENT,
                message_id=message.message_id,
                priority=message.priority,
                # str and list[str] are AMQP field values; the type is invariant in lists.
                headers=cast("dict[str, Any]", dict(message.headers)),
                reply_to=message.reply_to,
                correlation_id=message.correlation_id,
                timestamp=message.timestamp,
                user_id=self.user_id,
            ),
            mandatory=message.mandatory,
            timeout=self._confirm_timeout_s,
        )
        if not isinstance(confirmation, Basic.Ack):
            raise PublishError(_refusal(message, confirmation))


def _refusal(message: Outgoing, confirmation: object) -> str:
    """Why the broker did not take ``message``, from what it answered instead of an ack."""
    where = f"exchange {message.exchange!r}, routing key {message.routing_key!r}"
    if isinstance(confirmation, Basic.Nack):
        return f"the broker refused the message ({where})"
    if isinstance(confirmation, Basic.Reject):
        return f"the broker rejected the message ({where})"
    return f"no queue is bound for the message: it was returned unroutable ({where})"
