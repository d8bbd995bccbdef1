"""The test's own view of the broker: the raw results on the updates exchange and
the dead-lettered messages, read after the fact.

The result tap is a durable queue declared before the first job is submitted,
so it keeps every ``job_result`` published, also while the test's client is
reconnecting after a broker restart.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from uuid import UUID

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from segue.broker.boundary import REASON_HEADER, SOURCE_QUEUE_HEADER
from segue.broker.topology import declare_exchanges
from segue.protocol.codec import UPDATE_ADAPTER, InvalidMessageError, decode
from segue.protocol.messages import JobFinished
from segue.protocol.names import Names

from .audit import RawResult

RESULT_BINDING = "job.*.result"


async def open_result_tap(amqp_url: str, names: Names, queue_name: str) -> None:
    """Declare the durable tap queue, bound to every job's result on the updates exchange."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await declare_exchanges(channel, names)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(names.updates_exchange, routing_key=RESULT_BINDING)


async def drain_queue(amqp_url: str, queue_name: str) -> list[AbstractIncomingMessage]:
    """Every message waiting in ``queue_name``, taken off the queue."""
    connection = await aio_pika.connect(amqp_url)
    taken = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    return taken


async def drain_results(amqp_url: str, queue_name: str) -> dict[UUID, list[RawResult]]:
    """The ``job_result`` messages the tap collected, by job."""
    results: defaultdict[UUID, list[RawResult]] = defaultdict(list)
    for message in await drain_queue(amqp_url, queue_name):
        try:
            update = decode(UPDATE_ADAPTER, message.body)
        except InvalidMessageError as exc:
            raise AssertionError(f"undecodable result on the updates exchange: {exc}") from exc
        if isinstance(update, JobFinished):
            results[update.job_id].append(RawResult(message.message_id, update))
    return dict(results)


@dataclass(frozen=True)
class DeadLetter:
    """A message found in the dead-letter queue."""

    message_id: str | None
    reason: str
    source_queue: str
    body: bytes


def dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    """The parts of a dead-lettered message a test looks at."""
    headers = message.headers or {}
    return DeadLetter(
        message_id=message.message_id,
        reason=str(headers.get(REASON_HEADER, "")),
        source_queue=str(headers.get(SOURCE_QUEUE_HEADER, "")),
        body=message.body,
    )
