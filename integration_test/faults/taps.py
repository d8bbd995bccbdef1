"""The test's own view of the broker, and a tap that talks back.

- The updates tap is a durable queue declared before the first job is
  submitted, so it keeps every update published (every ``job_result``, or
  every update at all), also while the test's client is reconnecting after a
  broker restart. It is read after the fact, like the dead-letter queue.
- The :class:`TaskDuplicator` copies the task messages as they are published
  and publishes some of them once more, unchanged, a moment later: what the
  outbox relay does when an orchestrator dies between the broker's confirm
  and the deletion of the outbox row.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from segue.broker.boundary import REASON_HEADER, SOURCE_QUEUE_HEADER
from segue.broker.connection import connect
from segue.broker.publisher import ConfirmedPublisher, Outgoing
from segue.broker.topology import declare_exchanges
from segue.protocol.codec import TASK_ADAPTER, UPDATE_ADAPTER, InvalidMessageError, decode
from segue.protocol.messages import JobFinished, StepTask
from segue.protocol.names import Names

from .audit import RawResult, RawUpdate

RESULT_BINDING = "#.job.*.result"
"""Every job's result, whether its routing key names an owner (``client.<user>.job...``)
or not (``job...``)."""
UPDATE_BINDING = "#.job.*.*"
"""Every update of every job."""


async def open_result_tap(
    amqp_url: str, names: Names, queue_name: str, binding: str = RESULT_BINDING
) -> None:
    """Declare the durable tap queue, bound to the updates exchange with ``binding``
    (default: every job's result)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await declare_exchanges(channel, names)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(names.updates_exchange, routing_key=binding)


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


async def drain_updates(amqp_url: str, queue_name: str) -> dict[UUID, list[RawUpdate]]:
    """The updates the tap collected, by job, in the order they were published."""
    updates: defaultdict[UUID, list[RawUpdate]] = defaultdict(list)
    for message in await drain_queue(amqp_url, queue_name):
        try:
            update = decode(UPDATE_ADAPTER, message.body)
        except InvalidMessageError as exc:
            raise AssertionError(f"undecodable update on the updates exchange: {exc}") from exc
        updates[update.job_id].append(RawUpdate(message.message_id, update))
    return dict(updates)


def results_of(updates: dict[UUID, list[RawUpdate]]) -> dict[UUID, list[RawResult]]:
    """The ``job_result`` messages among ``updates``, by job."""
    results = {
        job_id: [
            RawResult(raw.message_id, raw.update)
            for raw in raws
            if isinstance(raw.update, JobFinished)
        ]
        for job_id, raws in updates.items()
    }
    return {job_id: found for job_id, found in results.items() if found}


async def drain_results(amqp_url: str, queue_name: str) -> dict[UUID, list[RawResult]]:
    """The ``job_result`` messages the tap collected, by job."""
    return results_of(await drain_updates(amqp_url, queue_name))


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


# --- duplicate task deliveries ------------------------------------------------------------

REPUBLISH_FOR_S = 30.0
"""How long a copy is retried while the broker restarts before it is given up."""
REPUBLISH_PAUSE_S = 0.5


@dataclass(frozen=True)
class DuplicatedTask:
    """A task message the duplicator published a second time (the broker confirmed it)."""

    job_id: UUID
    attempt_id: UUID
    step: str
    at: float
    """When the copy was confirmed (wall clock)."""


class TaskDuplicator:
    """Publishes a share of the task messages once more, unchanged, after a short delay.

    Its durable queue is bound to the tasks exchange with every step queue's
    routing key, so it receives a copy of each task as the orchestrator
    publishes it. ``share(task)`` says how likely that task is to be published
    again, ``delay_s`` how long after (drawn uniformly). The second copy has the
    same message id, priority and body: to a worker it is the same task again.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publisher: ConfirmedPublisher,
        queue: AbstractQueue,
        names: Names,
        rng: random.Random,
        share: Callable[[StepTask], float],
        delay_s: tuple[float, float],
    ) -> None:
        self._connection = connection
        self._publisher = publisher
        self._queue = queue
        self._names = names
        self._rng = rng
        self._share = share
        self._delay_s = delay_s
        self._seen: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self.duplicated: list[DuplicatedTask] = []
        self.given_up = 0

    @classmethod
    async def open(
        cls,
        amqp_url: str,
        names: Names,
        queue_name: str,
        step_queues: Sequence[str],
        rng: random.Random,
        share: Callable[[StepTask], float],
        delay_s: tuple[float, float],
    ) -> TaskDuplicator:
        """A duplicator with its own robust connection and tap queue; start it with
        :meth:`start`, end it with :meth:`close`."""
        connection = await connect(amqp_url, "segue-fault-task-duplicator")
        channel = await connection.channel(publisher_confirms=True)
        await declare_exchanges(channel, names)
        queue = await channel.declare_queue(queue_name, durable=True)
        for step_queue in step_queues:
            await queue.bind(names.tasks_exchange, routing_key=step_queue)
        publisher = ConfirmedPublisher(channel, confirm_timeout_s=5.0)
        return cls(connection, publisher, queue, names, rng, share, delay_s)

    async def start(self) -> None:
        """Start copying (the consumer is restored after a broker restart)."""
        await self._queue.consume(self._on_task, no_ack=True)

    async def close(self) -> None:
        """Drop the copies not published yet and close the connection."""
        for pending in list(self._pending):
            pending.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._connection.close()

    async def _on_task(self, message: AbstractIncomingMessage) -> None:
        key = message.message_id or message.body.hex()
        if key in self._seen:  # our own copy, or the relay's
            return
        self._seen.add(key)
        try:
            task = decode(TASK_ADAPTER, message.body)
        except InvalidMessageError:
            return
        if self._rng.random() >= self._share(task):
            return
        outgoing = Outgoing(
            exchange=self._names.tasks_exchange,
            routing_key=message.routing_key or "",
            body=message.body,
            message_id=message.message_id,
            priority=message.priority,
            headers=_text_headers(message.headers),
        )
        delay_s = self._rng.uniform(*self._delay_s)
        pending = asyncio.create_task(self._republish(task, outgoing, delay_s))
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)

    async def _republish(self, task: StepTask, outgoing: Outgoing, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        deadline = time.monotonic() + REPUBLISH_FOR_S
        while True:
            try:
                await self._publisher.publish(outgoing)
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker is restarting
                if time.monotonic() > deadline:
                    self.given_up += 1
                    return
                await asyncio.sleep(REPUBLISH_PAUSE_S)
            else:
                copy = DuplicatedTask(task.job_id, task.attempt_id, task.step, time.time())
                self.duplicated.append(copy)
                return


def _text_headers(headers: dict[str, Any] | None) -> dict[str, str | list[str]]:
    """The headers of a delivery that can be published again as they are (text ones)."""
    return {key: value for key, value in (headers or {}).items() if isinstance(value, str)}
