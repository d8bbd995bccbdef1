"""Acknowledging a batch of deliveries with as few frames as it takes.

Every ``basic.ack`` is a frame the client writes with a system call of its own
and the broker parses: one per message, it costs the orchestrator and RabbitMQ
more than anything else a message needs. ``basic.ack`` with ``multiple`` set
acknowledges every unacknowledged delivery of the channel up to a delivery
tag, so a batch can be acknowledged with one frame, provided no delivery of
that channel below the tag is still being handled by someone else (the other
batch of the same consumer, or the consumer of another queue on the channel).

So the deliveries of a channel are tracked from their arrival until they are
settled. A batch is acknowledged with one ``multiple`` ack up to its highest
tag below the lowest tag still unsettled outside the batch; its deliveries
above that are acknowledged one by one. Deliveries without a tag (or of
channels nobody tracks) are acknowledged one by one too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aio_pika.abc import AbstractIncomingMessage


class BatchAcks:
    """The unsettled deliveries of the consumer channels, and acks that respect them."""

    def __init__(self) -> None:
        self._unsettled: dict[Any, set[int]] = {}

    def unsettled(self, channel: object) -> int:
        """How many deliveries of ``channel`` are tracked and not settled."""
        return len(self._unsettled.get(channel, ()))

    def track(self, message: AbstractIncomingMessage) -> None:
        """``message`` was delivered and will be settled later."""
        if message.delivery_tag is not None:
            self._unsettled.setdefault(message.channel, set()).add(message.delivery_tag)

    def forget(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """``messages`` were settled (or never will be, on this channel)."""
        for message in messages:
            tags = self._unsettled.get(message.channel)
            if tags is None or message.delivery_tag is None:
                continue
            tags.discard(message.delivery_tag)
            if not tags:
                del self._unsettled[message.channel]

    async def ack(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Acknowledge ``messages``, with one frame per channel where it is safe."""
        by_channel: dict[Any, list[AbstractIncomingMessage]] = {}
        for message in messages:
            by_channel.setdefault(message.channel, []).append(message)
        for channel, batch in by_channel.items():
            await self._ack_on(channel, batch)

    async def _ack_on(self, channel: object, batch: list[AbstractIncomingMessage]) -> None:
        tracked = self._unsettled.get(channel, set())
        tagged = [m for m in batch if m.delivery_tag is not None and m.delivery_tag in tracked]
        mine = {m.delivery_tag for m in tagged}
        others = [tag for tag in tracked if tag not in mine]
        floor = min(others, default=None)
        below = [m for m in tagged if floor is None or (m.delivery_tag or 0) < floor]
        below_ids = {id(m) for m in below}
        single = [m for m in batch if id(m) not in below_ids]
        self.forget(batch)
        if len(below) > 1:
            highest = max(below, key=lambda m: m.delivery_tag or 0)
            await highest.ack(multiple=True)
        elif below:
            single.extend(below)
        for message in single:
            await message.ack()
