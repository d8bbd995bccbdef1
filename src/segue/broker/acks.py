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

from aio_pika.abc import AbstractIncomingMessage


class BatchAcks:
    """The unsettled deliveries of the consumer channels, and acks that respect them.

    A delivery's channel is noted when it arrives: aio-pika refuses to name
    the channel of a message once that channel has closed, and forgetting a
    delivery must work then too (a broker restart closes it under a batch).
    """

    def __init__(self) -> None:
        self._unsettled: dict[object, set[int]] = {}
        self._tracked: dict[int, tuple[object, int]] = {}

    def unsettled(self, channel: object) -> int:
        """How many deliveries of ``channel`` are tracked and not settled."""
        return len(self._unsettled.get(channel, ()))

    def track(self, message: AbstractIncomingMessage) -> None:
        """``message`` was delivered and will be settled later."""
        tag = message.delivery_tag
        if tag is None:
            return
        try:
            channel = message.channel
        except Exception:  # closed already: its deliveries cannot be acknowledged anyway
            return
        self._tracked[id(message)] = (channel, tag)
        self._unsettled.setdefault(channel, set()).add(tag)

    def forget(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """``messages`` were settled (or never will be, on this channel)."""
        for message in messages:
            tracked = self._tracked.pop(id(message), None)
            if tracked is None:
                continue
            channel, tag = tracked
            tags = self._unsettled[channel]
            tags.discard(tag)
            if not tags:
                del self._unsettled[channel]

    async def ack(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Acknowledge ``messages``, with one frame per channel where it is safe."""
        by_channel: dict[object, list[tuple[AbstractIncomingMessage, int]]] = {}
        single: list[AbstractIncomingMessage] = []
        for message in messages:
            tracked = self._tracked.get(id(message))
            if tracked is None:
                single.append(message)
            else:
                by_channel.setdefault(tracked[0], []).append((message, tracked[1]))
        together: list[AbstractIncomingMessage] = []
        for channel, batch in by_channel.items():
            below, above = self._split(channel, batch)
            if len(below) > 1:
                together.append(below[-1])  # up to and including it: all of ``below``
            else:
                single.extend(below)
            single.extend(above)
        self.forget(messages)
        for highest in together:
            await highest.ack(multiple=True)
        for message in single:
            await message.ack()

    def _split(
        self, channel: object, batch: list[tuple[AbstractIncomingMessage, int]]
    ) -> tuple[list[AbstractIncomingMessage], list[AbstractIncomingMessage]]:
        """The batch's deliveries below every other unsettled one of ``channel`` (highest
        tag last, the one to acknowledge with ``multiple``), and the others."""
        mine = {tag for _, tag in batch}
        floor = min((tag for tag in self._unsettled[channel] if tag not in mine), default=None)
        ordered = sorted(batch, key=lambda item: item[1])
        below = [message for message, tag in ordered if floor is None or tag < floor]
        above = [message for message, tag in ordered if floor is not None and tag > floor]
        return below, above
