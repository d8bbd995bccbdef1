"""Taking tasks from the task queues, never more than the worker's concurrency.

Tasks are acknowledged when they start (so hours-long steps survive the
broker's consumer timeout), which means the prefetch limit cannot bound how
many run at once. Instead the worker counts busy slots and cancels its
consumers (``basic.cancel``) when all are busy, before acknowledging the task
that took the last one, and consumes again when a slot frees. A task that is
delivered anyway while all slots are busy (several queues raced) is requeued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag

from segue.broker.boundary import ConsumeBoundary, Outcome, Verdict
from segue.broker.topology import declare_queue
from segue.protocol.codec import TASK_ADAPTER, InvalidMessageError, decode
from segue.protocol.messages import StepTask
from segue.protocol.names import Names
from segue.protocol.topology import task_queue
from segue.worker.attempt import Attempt
from segue.worker.handler import StepHandler
from segue.worker.reporter import retry_delays


class AttemptStarter(Protocol):
    """Starts and runs attempts for the intake (see :class:`RunningAttempts`)."""

    async def start(
        self, task: StepTask, handler: StepHandler, redelivered: bool
    ) -> Attempt | None: ...

    def launch(self, attempt: Attempt, on_done: Callable[[], None]) -> None: ...

    async def discard(self, attempt: Attempt) -> None: ...


class TaskIntake:
    """Consumes the task queues of the worker's handlers, ``capacity`` attempts at a time."""

    def __init__(
        self,
        channel: AbstractChannel,
        boundary: ConsumeBoundary,
        starter: AttemptStarter,
        capacity: int,
    ) -> None:
        self._channel = channel
        self._boundary = boundary
        self._starter = starter
        self._capacity = capacity
        self._queues: dict[str, tuple[AbstractQueue, StepHandler]] = {}
        self._tags: dict[str, ConsumerTag] = {}
        self._lock = asyncio.Lock()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger("segue.worker")

    @property
    def busy(self) -> int:
        """Slots taken by attempts being started or running."""
        return self._busy

    async def open(self, names: Names, handlers: Sequence[StepHandler]) -> None:
        """Declare the task queue of every handler and start consuming them."""
        for handler in handlers:
            queue = await declare_queue(self._channel, task_queue(names, handler.queue))
            self._queues[queue.name] = (queue, handler)
        await self._reconcile()

    async def close(self) -> None:
        """Stop taking tasks: cancel the consumers; later deliveries are requeued."""
        self._closing = True
        await self._reconcile()

    async def wait_idle(self) -> None:
        """Wait until no slot is busy."""
        await self._idle.wait()

    async def _on_message(
        self, queue_name: str, handler: StepHandler, message: AbstractIncomingMessage
    ) -> None:
        accepted: list[Attempt] = []

        async def accept(delivery: AbstractIncomingMessage) -> Outcome:
            return await self._accept(handler, delivery, accepted)

        try:
            await self._boundary.settle(queue_name, message, accept)
        except BaseException:
            for attempt in accepted:  # not acknowledged: the broker will deliver it again
                await self._starter.discard(attempt)
                self._release()
            raise
        for attempt in accepted:
            self._starter.launch(attempt, self._release)

    async def _accept(
        self, handler: StepHandler, message: AbstractIncomingMessage, accepted: list[Attempt]
    ) -> Outcome:
        if self._closing:
            return Outcome(Verdict.REQUEUE, "the worker is stopping", "task_requeued")
        if self._busy >= self._capacity:
            return Outcome(Verdict.REQUEUE, "all slots are busy", "task_requeued")
        try:
            task = decode(TASK_ADAPTER, message.body)
        except InvalidMessageError as exc:
            return Outcome.dead(f"invalid step task: {exc.reason}")
        self._take()
        try:
            await self._reconcile()  # stop consuming before the ack if this took the last slot
            attempt = await self._starter.start(task, handler, bool(message.redelivered))
        except BaseException:
            self._release()
            raise
        if attempt is None:
            self._release()
            return Outcome.ack("task_duplicate", f"attempt {task.attempt_id} already runs here")
        accepted.append(attempt)
        return Outcome.ack("task_started")

    def _take(self) -> None:
        self._busy += 1
        self._idle.clear()

    def _release(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()
        task = asyncio.create_task(self._reconcile_until_done(), name="segue-intake-reconcile")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reconcile_until_done(self) -> None:
        for delay in retry_delays(initial_s=0.5, max_s=10.0):
            try:
                await self._reconcile()
            except Exception as exc:  # e.g. the broker is away; consumers are retried
                self._log.warning("task_consume_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
            else:
                return

    async def _reconcile(self) -> None:
        """Consume or cancel the consumers to match the free slots and the closing flag."""
        async with self._lock:
            if not self._closing and self._busy < self._capacity:
                for name, (queue, handler) in self._queues.items():
                    if name not in self._tags:
                        callback = partial(self._on_message, name, handler)
                        self._tags[name] = await queue.consume(callback)
            else:
                for name, tag in list(self._tags.items()):
                    del self._tags[name]
                    await self._cancel(self._queues[name][0], tag)

    async def _cancel(self, queue: AbstractQueue, tag: ConsumerTag) -> None:
        try:
            await queue.cancel(tag)
        except Exception as exc:  # a robust queue forgets the consumer even so
            self._log.warning("task_consumer_cancel_failed", queue=queue.name, error=str(exc))
