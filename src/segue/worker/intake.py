"""Taking tasks from the task queues, never more than the worker's concurrency.

The guarantees:

- never more than ``capacity`` attempts run at once;
- a task is acknowledged only once its ``started`` report was confirmed by
  the broker (so hours-long steps survive the broker's consumer timeout, and
  a worker that dies before that leaves the task in its queue);
- on stop, every task not started is handed back to its queue;
- a task of an attempt cancelled before it arrived is acknowledged unrun,
  without a ``started`` report (see :class:`~segue.worker.cancels.RecentCancels`);
- a task that cannot be decoded is dead-lettered, and if it still names its
  job and attempt, the attempt is first reported failed (``invalid_task``, not
  retryable), so the orchestrator need not wait for its dispatch deadline.

How, cheaply: each task queue is consumed with a prefetch of ``capacity``
(``basic.qos``, per consumer). A delivery first takes a slot, then is
started and acknowledged. Because tasks are acknowledged when they start, the
prefetch does not bound how many run; the slots do. While all slots are busy,
the next deliveries wait in the worker for a slot, unacknowledged (at most
``capacity`` per queue, by the prefetch). For short steps a slot frees within
milliseconds, so a steady stream of tasks costs no broker round trip besides
the ``started`` and result confirms: the consumers stay as they are.

A delivery may only wait briefly, though: a step may run for hours, while a
held task is invisible to idle workers and an unacknowledged delivery counts
against the broker's consumer timeout. A delivery that got no slot within
``hold_s`` is handed back (``basic.nack``, requeue) and the consumers are
paused (``basic.cancel``) until a slot frees; then they consume again. So
cancelling and re-consuming happens once per busy period of long steps, not
once per task. (A task handed back this way shows as ``redelivered`` when it
starts; the orchestrator counts a redelivery as a crash only for an attempt
that had already started.)

A delivery that would have to wait while the worker stops is handed back at
once; a connection loss hands back every unacknowledged delivery by itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag

from segue.broker.boundary import ConsumeBoundary, Outcome, Verdict
from segue.broker.topology import declare_queue
from segue.errors import describe
from segue.logs import library_logger
from segue.protocol.codec import TASK_ADAPTER, InvalidMessageError, decode
from segue.protocol.messages import StepTask
from segue.protocol.names import Names
from segue.protocol.topology import task_queue
from segue.worker.attempt import Attempt
from segue.worker.attempts import TaskIds, task_ids
from segue.worker.handler import StepHandler
from segue.worker.reporter import retry_delays

HOLD_S = 0.25
"""How long a delivery may wait for a slot before it is handed back.

Far longer than the few milliseconds an instant step keeps a slot, far
shorter than steps that are worth handing to another worker."""


class AttemptStarter(Protocol):
    """Starts and runs attempts for the intake (see :class:`RunningAttempts`)."""

    async def start(
        self, task: StepTask, handler: StepHandler, redelivered: bool
    ) -> Attempt | None: ...

    def launch(self, attempt: Attempt, on_done: Callable[[], None]) -> None: ...

    def discard(self, attempt: Attempt) -> None: ...

    def cancelled_before(self, task: StepTask) -> str | None: ...

    async def refuse(self, ids: TaskIds, reason: str) -> bool: ...


class Slots:
    """``capacity`` slots handed out first come, first served.

    :meth:`take` waits at most ``wait_s`` for a slot; a freed slot goes
    straight to the longest waiting caller. After :meth:`close` nobody gets
    a slot any more. (Unlike ``asyncio.Semaphore``, it says how many are
    taken, and hands a slot over without a window in which a newcomer could
    take it first.)
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._busy = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> int:
        """Slots taken."""
        return self._busy

    @property
    def full(self) -> bool:
        """Whether every slot is taken."""
        return self._busy >= self._capacity

    async def take(self, wait_s: float) -> bool:
        """Take a slot, waiting up to ``wait_s``; False if none came or the slots closed."""
        if self._closed:
            return False
        if self._busy < self._capacity and not self._waiters:
            self._busy += 1
            self._idle.clear()
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=wait_s)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # handed over just as the caller was cancelled: pass it on
            else:
                self._forget(waiter)
            raise
        if waiter.done():
            return waiter.result()
        self._forget(waiter)
        return False

    def _forget(self, waiter: asyncio.Future[bool]) -> None:
        waiter.cancel()
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Free a slot: hand it to the longest waiting caller, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot changes hands; busy stays the same
                return
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    def close(self) -> None:
        """Refuse every waiting and later caller."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    async def wait_idle(self) -> None:
        """Wait until no slot is taken."""
        await self._idle.wait()


class TaskIntake:
    """Consumes the task queues of the worker's handlers, ``capacity`` attempts at a time."""

    def __init__(
        self,
        channel: AbstractChannel,
        boundary: ConsumeBoundary,
        starter: AttemptStarter,
        capacity: int,
        hold_s: float = HOLD_S,
    ) -> None:
        self._channel = channel
        self._boundary = boundary
        self._starter = starter
        self._capacity = capacity
        self._hold_s = hold_s
        self._slots = Slots(capacity)
        self._queues: dict[str, tuple[AbstractQueue, StepHandler]] = {}
        self._tags: dict[str, ConsumerTag] = {}
        self._lock = asyncio.Lock()
        self._paused = False
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()
        self._log = library_logger("segue.worker")

    @property
    def busy(self) -> int:
        """Slots taken by attempts being started or running."""
        return self._slots.busy

    @property
    def consuming(self) -> bool:
        """Whether the task queues are being consumed (not paused, not closed)."""
        return bool(self._tags)

    async def open(self, names: Names, handlers: Sequence[StepHandler]) -> None:
        """Declare the task queue of every handler and start consuming them."""
        await self._channel.set_qos(prefetch_count=self._capacity)
        for handler in handlers:
            queue = await declare_queue(self._channel, task_queue(names, handler.queue))
            self._queues[queue.name] = (queue, handler)
        await self._reconcile()

    async def close(self) -> None:
        """Stop taking tasks: cancel the consumers; waiting and later deliveries are requeued."""
        self._closing = True
        self._slots.close()
        await self._reconcile()

    async def wait_idle(self) -> None:
        """Wait until no slot is busy."""
        await self._slots.wait_idle()

    async def _on_message(
        self, queue_name: str, handler: StepHandler, message: AbstractIncomingMessage
    ) -> None:
        if not await self._slots.take(self._hold_s):
            await self._hand_back(queue_name, message)
            return
        accepted: list[Attempt] = []

        async def accept(delivery: AbstractIncomingMessage) -> Outcome:
            return await self._accept(handler, delivery, accepted)

        try:
            await self._boundary.settle(queue_name, message, accept)
        except BaseException:
            for attempt in accepted:  # not acknowledged: the broker will deliver it again
                self._starter.discard(attempt)
            self._release()
            raise
        if accepted:
            self._starter.launch(accepted[0], self._release)
        else:
            self._release()

    async def _accept(
        self, handler: StepHandler, message: AbstractIncomingMessage, accepted: list[Attempt]
    ) -> Outcome:
        try:
            task = decode(TASK_ADAPTER, message.body)
        except InvalidMessageError as exc:
            return await self._refuse(message.body, f"invalid step task: {exc.reason}")
        cancel_reason = self._starter.cancelled_before(task)
        if cancel_reason is not None:
            reason = f"attempt {task.attempt_id} cancelled before it arrived: {cancel_reason}"
            return Outcome.ack("task_cancelled", reason)
        attempt = await self._starter.start(task, handler, bool(message.redelivered))
        if attempt is None:
            return Outcome.ack("task_duplicate", f"attempt {task.attempt_id} already runs here")
        accepted.append(attempt)
        return Outcome.ack("task_started")

    async def _refuse(self, body: bytes, reason: str) -> Outcome:
        """Dead-letter an undecodable task, but first report its attempt failed if the
        task names one: else the orchestrator waits for the attempt's dispatch deadline."""
        ids = task_ids(body)
        if ids is None:
            return Outcome.dead(reason)
        if await self._starter.refuse(ids, reason):
            return Outcome.dead(f"{reason} (attempt {ids.attempt_id} reported failed)")
        return Outcome.dead(f"{reason} (attempt {ids.attempt_id} could not be reported failed)")

    async def _hand_back(self, queue_name: str, message: AbstractIncomingMessage) -> None:
        """Requeue a delivery that got no slot; pause consuming until a slot frees."""
        if self._closing:
            reason = "the worker is stopping"
        else:
            reason = f"no slot free within {self._hold_s} s"
            if not self._paused and self._slots.full:
                self._paused = True
                self._spawn_reconcile()
        await self._boundary.settle(queue_name, message, partial(_requeue, reason))

    def _release(self) -> None:
        self._slots.release()
        if self._paused:
            self._paused = False
            self._spawn_reconcile()

    def _spawn_reconcile(self) -> None:
        task = asyncio.create_task(self._reconcile_until_done(), name="segue-intake-reconcile")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reconcile_until_done(self) -> None:
        for delay in retry_delays(initial_s=0.5, max_s=10.0):
            try:
                await self._reconcile()
            except Exception as exc:  # e.g. the broker is away; consumers are retried
                self._log.warning("task_consume_failed", error=describe(exc))
                await asyncio.sleep(delay)
            else:
                return

    async def _reconcile(self) -> None:
        """Consume or cancel the consumers to match the paused and closing flags."""
        async with self._lock:
            if not self._closing and not self._paused:
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


async def _requeue(reason: str, message: AbstractIncomingMessage) -> Outcome:
    return Outcome(Verdict.REQUEUE, reason, "task_requeued")
