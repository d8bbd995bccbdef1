"""Batch acknowledgements: one frame where it is safe, never a message of someone else."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.broker.acks import BatchAcks


@dataclass(eq=False)
class Channel:
    """A broker channel's view: which deliveries are unacknowledged, and the frames."""

    unacked: set[int] = field(default_factory=set)
    frames: int = 0
    errors: list[str] = field(default_factory=list)

    def ack(self, tag: int, multiple: bool) -> list[int]:
        self.frames += 1
        if tag not in self.unacked:
            self.errors.append(f"unknown delivery tag {tag}")  # the broker closes the channel
            return []
        covered = sorted(t for t in self.unacked if t <= tag) if multiple else [tag]
        self.unacked.difference_update(covered)
        return covered


@dataclass(eq=False)
class Delivery:
    channel: Channel
    delivery_tag: int | None
    acked_with: list[int] = field(default_factory=list)

    async def ack(self, multiple: bool = False) -> None:
        assert self.delivery_tag is not None
        self.acked_with.extend(self.channel.ack(self.delivery_tag, multiple))

    @property
    def typed(self) -> AbstractIncomingMessage:
        return cast(AbstractIncomingMessage, self)


def deliver(channel: Channel, tags: Sequence[int], acks: BatchAcks) -> list[Delivery]:
    deliveries = [Delivery(channel, tag) for tag in tags]
    for delivery in deliveries:
        channel.unacked.add(tag_of(delivery))
        acks.track(delivery.typed)
    return deliveries


def tag_of(delivery: Delivery) -> int:
    assert delivery.delivery_tag is not None
    return delivery.delivery_tag


def typed(deliveries: Sequence[Delivery]) -> list[AbstractIncomingMessage]:
    return [delivery.typed for delivery in deliveries]


async def test_a_batch_below_every_other_delivery_is_acked_with_one_frame() -> None:
    acks, channel = BatchAcks(), Channel()
    first, later = deliver(channel, range(1, 65), acks), deliver(channel, range(65, 80), acks)
    await acks.ack(typed(first))
    assert channel.frames == 1
    assert channel.unacked == {tag_of(d) for d in later}, "the later batch is still held"
    assert acks.unsettled(channel) == len(later)


async def test_a_batch_above_one_still_handled_is_acked_one_by_one() -> None:
    acks, channel = BatchAcks(), Channel()
    earlier, batch = deliver(channel, [1, 2], acks), deliver(channel, [3, 4, 5], acks)
    await acks.ack(typed(batch))
    assert channel.frames == 3
    assert channel.unacked == {1, 2}
    await acks.ack(typed(earlier))
    assert channel.unacked == set()
    assert channel.errors == []
    assert acks.unsettled(channel) == 0, "nothing is remembered once settled"


async def test_deliveries_of_another_channel_do_not_hold_a_batch_back() -> None:
    acks, one, other = BatchAcks(), Channel(), Channel()
    deliver(other, [1, 2, 3], acks)
    batch = deliver(one, [7, 8, 9], acks)
    await acks.ack(typed(batch))
    assert (one.frames, one.unacked, other.unacked) == (1, set(), {1, 2, 3})


async def test_untracked_deliveries_are_acked_one_by_one() -> None:
    acks, channel = BatchAcks(), Channel()
    batch = [Delivery(channel, tag) for tag in (1, 2, 3)]
    channel.unacked.update({1, 2, 3})
    await acks.ack(typed(batch))
    assert channel.frames == 3
    assert channel.unacked == set()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=40).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.integers(min_value=0, max_value=3), min_size=n, max_size=n),
            st.permutations(range(4)),
            st.sets(st.integers(min_value=1, max_value=n)),
        )
    )
)
def test_every_delivery_is_acked_once_and_only_by_its_own_batch(
    case: tuple[int, list[int], list[int], set[int]],
) -> None:
    # ``n`` deliveries spread over four batches (by consumer and arrival), settled
    # in any order; the ``requeued`` ones are given back instead of acknowledged.
    n, batch_of, order, requeued = case

    async def run() -> None:
        acks, channel = BatchAcks(), Channel()
        deliveries = deliver(channel, range(1, n + 1), acks)
        for batch in order:
            mine = [d for d in deliveries if batch_of[tag_of(d) - 1] == batch]
            given_back = [d for d in mine if tag_of(d) in requeued]
            for delivery in given_back:
                channel.unacked.discard(tag_of(delivery))  # basic.nack, requeue
            acks.forget(typed(given_back))
            to_ack = [d for d in mine if tag_of(d) not in requeued]
            before = set(channel.unacked)
            await acks.ack(typed(to_ack))
            assert before - channel.unacked == {tag_of(d) for d in to_ack}
        assert channel.errors == []
        assert channel.unacked == set()
        assert acks.unsettled(channel) == 0

    asyncio.run(run())


class Closable:
    """A delivery as aio-pika's: once its channel closed, naming the channel raises."""

    def __init__(self, channel: Channel, tag: int) -> None:
        self._channel = channel
        self.delivery_tag = tag
        self.closed = False

    @property
    def channel(self) -> Channel:
        if self.closed:
            raise RuntimeError("ChannelInvalidStateError: channel closed")
        return self._channel

    async def ack(self, multiple: bool = False) -> None:
        if self.closed:
            raise RuntimeError("ChannelInvalidStateError: channel closed")
        self._channel.ack(self.delivery_tag, multiple)


async def test_deliveries_of_a_channel_that_closed_are_settled_without_a_new_error() -> None:
    acks, channel = BatchAcks(), Channel()
    deliveries = [Closable(channel, tag) for tag in (1, 2, 3)]
    for delivery in deliveries:
        acks.track(cast(AbstractIncomingMessage, delivery))
    for delivery in deliveries:
        delivery.closed = True  # a broker restart, while the batch was handled
    forgotten = [cast(AbstractIncomingMessage, delivery) for delivery in deliveries[:1]]
    acks.forget(forgotten)  # never raises: the batch loop calls it in ``finally``
    assert acks.unsettled(channel) == 2
    with pytest.raises(RuntimeError):  # as acking one by one would: the batch is requeued
        await acks.ack([cast(AbstractIncomingMessage, d) for d in deliveries[1:]])
    assert acks.unsettled(channel) == 0
