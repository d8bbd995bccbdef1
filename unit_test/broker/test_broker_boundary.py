"""The consume boundary settles every message of a batch exactly once: ack,
dead-letter (with the reason) or requeue; one bad message fails no neighbour."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from fakes import FakeMessage, FakePublisher, incoming
from segue.broker.boundary import (
    MAX_REASON_CHARS,
    REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    ConsumeBoundary,
    Outcome,
    Verdict,
)
from segue.broker.publisher import ConfirmedPublisher

QUEUE = "test.events"
DEAD = "test.dead"


class Recorder:
    """A batch handler that answers from a script and records every batch it got."""

    def __init__(self, poison: bytes | None = None, error: Exception | None = None) -> None:
        self.batches: list[list[bytes]] = []
        self.poison = poison
        self.error = error or ValueError("cannot handle this batch")

    async def __call__(self, messages: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        bodies = [message.body for message in messages]
        self.batches.append(bodies)
        if self.poison is not None and self.poison in bodies:
            raise self.error
        return [
            Outcome.dead(f"refused {b.decode()}") if b.startswith(b"bad") else Outcome.ack()
            for b in bodies
        ]


def boundary(
    publisher: FakePublisher, observed: list[tuple[str, Outcome]] | None = None
) -> ConsumeBoundary:
    def observe(queue: str, outcome: Outcome, _seconds: float) -> None:
        if observed is not None:
            observed.append((queue, outcome))

    return ConsumeBoundary(
        cast(ConfirmedPublisher, publisher),
        DEAD,
        retry_delay_s=0,
        observer=observe,
        is_transient=lambda exc: isinstance(exc, ConnectionError),
    )


def messages(*bodies: bytes) -> list[FakeMessage]:
    return [FakeMessage(b, message_id=f"m-{n}") for n, b in enumerate(bodies)]


async def test_a_batch_of_good_messages_is_all_acked() -> None:
    publisher, observed = FakePublisher(), list[tuple[str, Outcome]]()
    batch = messages(b"one", b"two", b"three")
    handler = Recorder()

    await boundary(publisher, observed).settle_batch(QUEUE, incoming(batch), handler)

    assert [m.settled for m in batch] == [["ack"], ["ack"], ["ack"]]
    assert handler.batches == [[b"one", b"two", b"three"]]
    assert publisher.published == []
    assert observed == [(QUEUE, Outcome.ack())] * 3


async def test_a_dead_outcome_is_published_to_the_dead_exchange_with_its_reason() -> None:
    publisher = FakePublisher()
    batch = messages(b"good", b"bad-1")
    batch[1].headers = {"x-trace": "abc"}

    await boundary(publisher).settle_batch(QUEUE, incoming(batch), Recorder())

    assert [m.settled for m in batch] == [["ack"], ["ack"]]
    (dead,) = publisher.published
    assert (dead.exchange, dead.routing_key) == (DEAD, QUEUE)
    assert (dead.body, dead.message_id) == (b"bad-1", "m-1")
    assert dead.headers == {
        "x-trace": "abc",
        REASON_HEADER: "refused bad-1",
        SOURCE_QUEUE_HEADER: QUEUE,
    }


async def test_a_long_reason_is_cut_in_the_dead_letter_header_and_the_body_kept_whole() -> None:
    publisher = FakePublisher()
    body = b"bad-" + b"x" * 100_000
    batch = messages(body)

    await boundary(publisher).settle_batch(QUEUE, incoming(batch), Recorder())

    (dead,) = publisher.published
    assert dead.body == body
    reason = str(dead.headers[REASON_HEADER])
    assert len(reason) <= MAX_REASON_CHARS
    assert reason.startswith("refused bad-xxx")
    assert reason.endswith("more characters)")


async def test_a_message_that_cannot_be_dead_lettered_is_requeued_not_lost() -> None:
    publisher = FakePublisher(refuse=lambda _message: True)
    batch = messages(b"good", b"bad-1")

    await boundary(publisher).settle_batch(QUEUE, incoming(batch), Recorder())

    assert [m.settled for m in batch] == [["ack"], ["requeue"]]


async def test_a_permanent_batch_failure_retries_each_message_alone() -> None:
    publisher, observed = FakePublisher(), list[tuple[str, Outcome]]()
    batch = messages(b"one", b"poison", b"three")
    handler = Recorder(poison=b"poison")

    await boundary(publisher, observed).settle_batch(QUEUE, incoming(batch), handler)

    assert handler.batches == [[b"one", b"poison", b"three"], [b"one"], [b"poison"], [b"three"]]
    assert [m.settled for m in batch] == [["ack"], ["ack"], ["ack"]]
    (dead,) = publisher.published
    assert dead.body == b"poison"
    assert dead.headers[REASON_HEADER] == "handler error: ValueError: cannot handle this batch"
    assert [outcome.verdict for _, outcome in observed] == [
        Verdict.ACK,
        Verdict.DEAD_LETTER,
        Verdict.ACK,
    ]


async def test_a_transient_failure_requeues_the_whole_batch() -> None:
    publisher = FakePublisher()
    batch = messages(b"one", b"poison", b"three")
    handler = Recorder(poison=b"poison", error=ConnectionResetError("database went away"))

    await boundary(publisher).settle_batch(QUEUE, incoming(batch), handler)

    assert handler.batches == [[b"one", b"poison", b"three"]]
    assert [m.settled for m in batch] == [["requeue"], ["requeue"], ["requeue"]]
    assert publisher.published == []


async def test_a_transient_failure_of_a_message_alone_requeues_only_it() -> None:
    publisher = FakePublisher()
    batch = messages(b"one", b"poison")

    calls = 0

    async def handler(received: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("the batch fails for good")
        if received[0].body == b"poison":
            raise ConnectionResetError("database went away")
        return [Outcome.ack()]

    await boundary(publisher).settle_batch(QUEUE, incoming(batch), handler)

    assert [m.settled for m in batch] == [["ack"], ["requeue"]]
    assert publisher.published == []


@pytest.mark.parametrize("size", [1, 2])
async def test_a_handler_error_never_escapes(size: int) -> None:
    batch = messages(*(b"x" for _ in range(size)))

    async def broken(_received: Sequence[AbstractIncomingMessage]) -> list[Outcome]:
        raise KeyError("a bug")

    publisher = FakePublisher()

    await boundary(publisher).settle_batch(QUEUE, incoming(batch), broken)

    assert all(m.settled == ["ack"] for m in batch)
    assert len(publisher.published) == size
    assert all("KeyError" in m.headers[REASON_HEADER] for m in publisher.published)
