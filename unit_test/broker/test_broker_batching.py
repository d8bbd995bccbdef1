"""The batch consumer handles what was delivered by the time a handler is free,
up to ``max_batch`` at once, and finishes what it holds when stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from fakes import FakeMessage, FakePublisher, FakeQueue
from segue.broker.batching import BatchConsumer
from segue.broker.boundary import ConsumeBoundary, Outcome, Verdict
from segue.broker.publisher import ConfirmedPublisher


class GatedHandler:
    """Records each batch; holds every batch until ``gate`` is open."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.gate = asyncio.Event()

    async def __call__(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        self.batches.append([message.body for message in messages])
        await self.gate.wait()
        return [Outcome.ack() for _ in messages]


def consumer(
    queue: FakeQueue, handler: GatedHandler, max_batch: int = 3, workers: int = 1
) -> BatchConsumer:
    boundary = ConsumeBoundary(cast(ConfirmedPublisher, FakePublisher()), "test.dead")
    return BatchConsumer(queue.typed, boundary, handler, max_batch, workers)


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Let the event loop run until ``condition`` holds."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the code under test signals nothing
            await asyncio.sleep(0.001)


def numbered(count: int) -> list[FakeMessage]:
    return [FakeMessage(f"m{n}".encode()) for n in range(1, count + 1)]


async def test_a_lone_message_is_handled_at_once() -> None:
    queue, handler = FakeQueue(), GatedHandler()
    handler.gate.set()
    batches = consumer(queue, handler)
    await batches.start()
    (message,) = numbered(1)

    await queue.deliver(message)
    await until(lambda: message.settled == ["ack"])

    assert handler.batches == [[b"m1"]]
    assert await batches.stop(timeout_s=1) == 0


async def test_messages_delivered_while_the_handler_is_busy_are_handled_together() -> None:
    queue, handler = FakeQueue(), GatedHandler()
    batches = consumer(queue, handler, max_batch=3)
    await batches.start()
    first, *rest = numbered(6)
    await queue.deliver(first)
    await until(lambda: len(handler.batches) == 1)

    for message in rest:
        await queue.deliver(message)
    handler.gate.set()
    await until(lambda: all(m.settled == ["ack"] for m in [first, *rest]))

    assert handler.batches == [[b"m1"], [b"m2", b"m3", b"m4"], [b"m5", b"m6"]]
    assert await batches.stop(timeout_s=1) == 0


async def test_several_workers_handle_batches_at_once() -> None:
    queue, handler = FakeQueue(), GatedHandler()
    batches = consumer(queue, handler, max_batch=10, workers=2)
    await batches.start()
    for message in numbered(2):
        await queue.deliver(message)
        await asyncio.sleep(0.01)

    await until(lambda: len(handler.batches) == 2)  # both held at the gate at once

    assert handler.batches == [[b"m1"], [b"m2"]]
    handler.gate.set()
    assert await batches.stop(timeout_s=1) == 0


async def test_stop_stops_consuming_and_drains_what_was_delivered() -> None:
    queue, handler = FakeQueue(), GatedHandler()
    batches = consumer(queue, handler, max_batch=2)
    await batches.start()
    delivered = numbered(5)
    for message in delivered:
        await queue.deliver(message)
    await until(lambda: len(handler.batches) == 1)

    stopping = asyncio.create_task(batches.stop(timeout_s=2))
    await until(lambda: queue.cancelled == ["ctag-1"])
    handler.gate.set()
    left = await stopping

    assert left == 0
    assert all(message.settled == ["ack"] for message in delivered)
    assert sum(len(batch) for batch in handler.batches) == 5


async def test_stop_gives_up_after_its_timeout_and_says_how_many_are_left() -> None:
    queue, handler = FakeQueue(), GatedHandler()  # the gate never opens
    batches = consumer(queue, handler, max_batch=2)
    await batches.start()
    delivered = numbered(5)
    for message in delivered:
        await queue.deliver(message)
    await until(lambda: len(handler.batches) == 1)

    left = await batches.stop(timeout_s=0.05)

    assert left == 4  # one batch in hand (counted once) and three waiting
    assert all(message.settled == [] for message in delivered)


@pytest.mark.parametrize(("max_batch", "workers"), [(0, 1), (1, 0)])
def test_batch_size_and_workers_must_be_positive(max_batch: int, workers: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        consumer(FakeQueue(), GatedHandler(), max_batch, workers)


async def test_a_failed_settle_does_not_stop_the_consumer() -> None:
    queue, handler = FakeQueue(), GatedHandler()
    handler.gate.set()
    batches = consumer(queue, handler, workers=1)
    await batches.start()
    lost, after = numbered(2)
    lost.ack_error = ConnectionResetError("channel closed")  # as aiormq raises on a dead channel

    await queue.deliver(lost)
    await until(lambda: len(handler.batches) == 1)
    await asyncio.sleep(0.01)
    await queue.deliver(after)
    try:
        await until(lambda: after.settled == ["ack"], timeout_s=0.5)
    finally:
        await batches.stop(timeout_s=0.1)


async def test_held_and_given_back_messages_are_counted_with_their_oldest_timestamp() -> None:
    queue = FakeQueue()
    early, late = datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    gate = asyncio.Event()

    async def requeue_all(messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        await gate.wait()
        return [Outcome(Verdict.REQUEUE, "the database went away") for _ in messages]

    boundary = ConsumeBoundary(cast(ConfirmedPublisher, FakePublisher()), "test.dead")
    batches = BatchConsumer(queue.typed, boundary, requeue_all, max_batch=5, workers=1)
    await batches.start()
    await queue.deliver(FakeMessage(b"a", timestamp=late))
    await queue.deliver(FakeMessage(b"b", timestamp=early))
    await until(lambda: batches.held()[0] == 2)

    assert batches.held() == (2, early, True)
    gate.set()
    await until(lambda: batches.unsettled == 0)
    assert batches.held() == (2, early, True), "given back: held until the queue is empty"
    batches.forget_returned()
    assert batches.held() == (2, early, True), "until the other replicas had time to say"
    batches.forget_returned(held_for_s=0)
    assert batches.held() == (0, None, True)
    await queue.deliver(FakeMessage(b"c"))  # from a worker that stamps nothing
    await until(lambda: batches.held()[0] == 1)
    assert batches.held() == (1, None, False)
    await batches.stop(timeout_s=0.1)
