"""Sending the client's commands: confirmed by the broker, and stamped with the
user of the connection.

RabbitMQ refuses a message whose ``user_id`` is not the user of the connection
that publishes it, so the orchestrator can trust ``user_id`` as the author of a
command: the owner of the job it submits, the user a cancel, retry or query is
allowed or refused to.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aio_pika.abc import AbstractChannel
from pamqp.commands import Basic

from segue.broker.publisher import JSON_CONTENT_TYPE, PERSISTENT, TRANSIENT, PublishError
from segue.protocol.envelope import Outgoing


class CommandSender:
    """Publishes on one channel opened with publisher confirms, as ``user``."""

    def __init__(
        self, channel: AbstractChannel, user: str, confirm_timeout_s: float = 30.0
    ) -> None:
        self._channel = channel
        self.user = user
        self._confirm_timeout_s = confirm_timeout_s

    async def send(self, message: Outgoing) -> None:
        """Publish ``message`` with ``user_id`` = :attr:`user` and wait for the confirm.

        Raises :class:`PublishError` if the connection dropped before the
        confirm; the broker's refusals are aiormq's exceptions.
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
        channel = await self._channel.get_underlay_channel()
        await channel.basic_publish(
            message.body,
            exchange=message.exchange,
            routing_key=message.routing_key,
            properties=Basic.Properties(
                content_type=JSON_CONTENT_TYPE,
                delivery_mode=PERSISTENT if message.persistent else TRANSIENT,
                message_id=message.message_id,
                priority=message.priority,
                # str and list[str] are AMQP field values; the type is invariant in lists.
                headers=cast("dict[str, Any]", dict(message.headers)),
                reply_to=message.reply_to,
                correlation_id=message.correlation_id,
                user_id=self.user,
            ),
            mandatory=message.mandatory,
            timeout=self._confirm_timeout_s,
        )
