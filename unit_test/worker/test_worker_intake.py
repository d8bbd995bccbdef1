"""The task intake against a fake channel: the concurrency bound, acks after
``started``, and consumers that stay put while short tasks stream through."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast
from uuid import uuid4

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from segue.broker.boundary import ConsumeBoundary
from segue.broker.publisher import ConfirmedPublisher
from segue.protocol.codec import encode
from segue.protocol.messages import StepTask, WorkerEvent
from segue.protocol.names import Names
from segue.worker import StepContext, step_handler
from segue.worker.attempt import Attempt, AttemptSettings
from segue.worker.handler import StepHandler
from segue.worker.intake import TaskIntake

Callback = Callable[[AbstractIncomingMessage], Any]


@step_handler("work")
async def work(ctx: StepContext) -> None:
    return None


class FakeMessage:
    def __init__(self) -> None:
        task = StepTask(
            job_id=uuid4(), workflow="w", step="work", queue="work", attempt=1, attempt_id=uuid4()
        )
        self.body = encode(task)
        self.attempt_id = task.attempt_id
        self.redelivered = False
        self.message_id = uuid4().hex
        self.headers: dict[str, Any] = {}
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append("requeue" if requeue else "reject")


class FakeQueue:
    def __init__(self, name: str) -> None:
        self.name = name
        self.callback: Callback | None = None
        self.consumes = 0
        self.cancels = 0

    async def bind(self, exchange: str, routing_key: str = "") -> None:
        return None

    async def consume(self, callback: Callback) -> str:
        self.consumes += 1
        self.callback = callback
        return f"tag{self.consumes}"

    async def cancel(self, tag: str) -> None:
        self.cancels += 1
        self.callback = None

    def deliver(self, message: FakeMessage) -> asyncio.Task[Any]:
        assert self.callback is not None, "delivered to a cancelled consumer"
        return asyncio.ensure_future(self.callback(cast(AbstractIncomingMessage, message)))


class FakeChannel:
    def __init__(self) -> None:
        self.queue = FakeQueue("t.task.work")
        self.prefetch: int | None = None

    async def set_qos(self, prefetch_count: int) -> None:
        self.prefetch = prefetch_count

    async def declare_queue(self, name: str, **_: Any) -> FakeQueue:
        assert name == self.queue.name
        return self.queue


class NullSink:
    async def send(self, event: WorkerEvent) -> bool:
        return True

    async def send_once(self, event: WorkerEvent) -> bool:
        return True

    async def send_or_raise(self, event: WorkerEvent) -> None:
        return None


class Starter:
    """Starts attempts after ``confirm_s`` and runs each for ``run_s``."""

    def __init__(self, run_s: float, confirm_s: float = 0.0) -> None:
        self.run_s = run_s
        self.confirm_s = confirm_s
        self.running = 0
        self.peak = 0
        self.finished = 0
        self.acked_before_started: list[bool] = []
        self.messages: dict[Any, FakeMessage] = {}

    async def start(self, task: StepTask, handler: StepHandler, redelivered: bool) -> Attempt:
        await asyncio.sleep(self.confirm_s)
        message = self.messages[task.attempt_id]
        self.acked_before_started.append("ack" in message.settled)
        return Attempt(task, handler, NullSink(), AttemptSettings("w1"))

    def launch(self, attempt: Attempt, on_done: Callable[[], None]) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)

        async def run() -> None:
            await asyncio.sleep(self.run_s)
            self.running -= 1
            self.finished += 1
            on_done()

        asyncio.get_running_loop().create_task(run())

    def discard(self, attempt: Attempt) -> None:
        return None


async def open_intake(
    starter: Starter, capacity: int, hold_s: float
) -> tuple[TaskIntake, FakeChannel]:
    channel = FakeChannel()
    boundary = ConsumeBoundary(cast(ConfirmedPublisher, None), "t.dead")
    intake = TaskIntake(cast(AbstractChannel, channel), boundary, starter, capacity, hold_s)
    await intake.open(Names("t"), [work])
    return intake, channel


def messages_for(starter: Starter, count: int) -> list[FakeMessage]:
    messages = [FakeMessage() for _ in range(count)]
    starter.messages.update({m.attempt_id: m for m in messages})
    return messages


async def test_short_tasks_stream_through_one_consumer_within_the_bound() -> None:
    starter = Starter(run_s=0.002, confirm_s=0.001)
    intake, channel = await open_intake(starter, capacity=2, hold_s=1.0)
    messages = messages_for(starter, 20)
    await asyncio.gather(*(channel.queue.deliver(m) for m in messages))
    await asyncio.wait_for(intake.wait_idle(), 2)
    assert channel.prefetch == 2
    assert starter.finished == 20
    assert starter.peak == 2, "never more than the capacity at once"
    assert all(m.settled == ["ack"] for m in messages)
    assert not any(starter.acked_before_started), "acked only once started"
    assert (channel.queue.consumes, channel.queue.cancels) == (1, 0)


async def test_a_task_stuck_behind_a_long_step_is_handed_back_and_consuming_pauses() -> None:
    starter = Starter(run_s=0.3)
    intake, channel = await open_intake(starter, capacity=1, hold_s=0.05)
    first, second = messages_for(starter, 2)
    await channel.queue.deliver(first)
    await asyncio.wait_for(channel.queue.deliver(second), 1)
    assert second.settled == ["requeue"], "handed back after hold_s, not held for the step"
    await asyncio.sleep(0.01)
    assert channel.queue.cancels == 1
    assert not intake.consuming
    await asyncio.wait_for(intake.wait_idle(), 2)
    await asyncio.sleep(0.01)
    assert intake.consuming, "consuming again once a slot is free"
    assert channel.queue.consumes == 2


async def test_close_hands_back_a_waiting_task_at_once() -> None:
    starter = Starter(run_s=0.3)
    intake, channel = await open_intake(starter, capacity=1, hold_s=10.0)
    first, second = messages_for(starter, 2)
    await channel.queue.deliver(first)
    waiting = channel.queue.deliver(second)
    await asyncio.sleep(0.01)
    await intake.close()
    await asyncio.wait_for(waiting, 1)
    assert second.settled == ["requeue"]
    assert first.settled == ["ack"]
    assert intake.busy == 1, "the running step goes on"
    await asyncio.wait_for(intake.wait_idle(), 2)
