"""The task intake against a fake channel: the concurrency bound, acks after
``started``, and consumers that stay put while short tasks stream through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, cast
from uuid import uuid4

import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from structlog.testing import capture_logs

from fakes import FakePublisher, FakeSink
from segue.broker.boundary import REASON_HEADER, ConsumeBoundary
from segue.protocol.codec import encode
from segue.protocol.kinds import INVALID_TASK
from segue.protocol.messages import CancelAttempt, StepFailed, StepTask, WorkerEvent
from segue.protocol.names import Names
from segue.protocol.tokens import token_digest
from segue.worker import StepContext, step_handler
from segue.worker.attempt import Attempt, AttemptSettings
from segue.worker.attempts import RunningAttempts, TaskIds, task_ids
from segue.worker.handler import StepHandler
from segue.worker.intake import AttemptStarter, TaskIntake

Callback = Callable[[AbstractIncomingMessage], Any]


@step_handler("work")
async def work(ctx: StepContext) -> None:
    return None


def make_task(token: str | None = None) -> StepTask:
    return StepTask(
        job_id=uuid4(),
        workflow="w",
        step="work",
        queue="work",
        attempt=1,
        attempt_id=uuid4(),
        token=token,
    )


class FakeMessage:
    def __init__(self, task: StepTask | None = None, body: bytes | None = None) -> None:
        task = task or make_task()
        self.body = encode(task) if body is None else body
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

    def cancelled_before(self, task: StepTask) -> str | None:
        return None

    async def refuse(self, ids: TaskIds, reason: str) -> bool:
        return True


async def open_intake(
    starter: AttemptStarter,
    capacity: int,
    hold_s: float,
    publisher: FakePublisher | None = None,
) -> tuple[TaskIntake, FakeChannel]:
    channel = FakeChannel()
    boundary = ConsumeBoundary(publisher or FakePublisher(), "t.dead")
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


TOKEN = "f00d" * 8


class WorkerParts:
    """A worker ``w1``'s intake and attempts; its one handler counts its runs."""

    def __init__(self, sink: FakeSink | None = None) -> None:
        self.sink = sink or FakeSink()
        self.publisher = FakePublisher()
        self.attempts = RunningAttempts(self.sink, AttemptSettings("w1"))
        self.runs = 0

    async def open(self) -> tuple[TaskIntake, FakeChannel]:
        @step_handler("work")
        async def counted(ctx: StepContext) -> None:
            self.runs += 1

        channel = FakeChannel()
        boundary = ConsumeBoundary(self.publisher, "t.dead")
        intake = TaskIntake(cast(AbstractChannel, channel), boundary, self.attempts, 1, 1.0)
        await intake.open(Names("t"), [counted])
        return intake, channel

    def dead_letters(self) -> list[str]:
        """The reasons of the messages dead-lettered."""
        return [str(m.headers[REASON_HEADER]) for m in self.publisher.to("t.task.work")]


def cancel_of(task: StepTask, worker_id: str | None = None) -> CancelAttempt:
    assert task.token is not None
    return CancelAttempt(
        job_id=task.job_id,
        attempt_id=task.attempt_id,
        reason="job cancelled",
        worker_id=worker_id,
        token_digest=token_digest(task.token),
    )


@pytest.mark.parametrize("worker_id", [None, "w1"])
async def test_a_task_of_an_attempt_cancelled_before_it_arrived_is_dropped_unrun(
    worker_id: str | None,
) -> None:
    worker = WorkerParts()
    intake, channel = await worker.open()
    task = make_task(TOKEN)
    worker.attempts.cancel(cancel_of(task, worker_id))
    message = FakeMessage(task)
    with capture_logs() as logs:
        await channel.queue.deliver(message)
        await asyncio.wait_for(intake.wait_idle(), 2)

    assert message.settled == ["ack"], "taken off the queue"
    assert worker.runs == 0
    assert worker.sink.events == [], "not even reported started"
    [entry] = [entry for entry in logs if entry["event"] == "task_cancelled"]
    assert entry["log_level"] == "info"
    assert "job cancelled" in entry["reason"]


async def test_a_task_whose_early_cancel_was_meant_for_another_worker_runs() -> None:
    worker = WorkerParts()
    intake, channel = await worker.open()
    task = make_task(TOKEN)
    worker.attempts.cancel(cancel_of(task, worker_id="w2"))
    message = FakeMessage(task)
    await channel.queue.deliver(message)
    await asyncio.wait_for(intake.wait_idle(), 2)
    assert message.settled == ["ack"]
    assert worker.runs == 1


async def test_an_undecodable_task_with_ids_is_reported_failed_and_dead_lettered() -> None:
    worker = WorkerParts()
    intake, channel = await worker.open()
    job_id, attempt_id = uuid4(), uuid4()
    body = {"type": "step_task", "job_id": str(job_id), "attempt_id": str(attempt_id)}
    message = FakeMessage(body=json.dumps({**body, "token": TOKEN, "step": "work"}).encode())
    await channel.queue.deliver(message)
    await asyncio.wait_for(intake.wait_idle(), 2)

    [failed] = worker.sink.events
    assert isinstance(failed, StepFailed)
    assert (failed.job_id, failed.attempt_id, failed.worker_id) == (job_id, attempt_id, "w1")
    assert failed.token == TOKEN
    assert failed.sent_at is not None
    assert not failed.retryable
    assert failed.error.kind == INVALID_TASK
    assert failed.error.message.startswith("invalid step task: ")
    assert "workflow" in failed.error.message, "says what is wrong with the task"
    [reason] = worker.dead_letters()
    assert reason.startswith("invalid step task: ")
    assert "reported failed" in reason
    assert message.settled == ["ack"]
    assert worker.runs == 0


class RefusingSink(FakeSink):
    """The broker does not confirm a one-off report."""

    async def send_once(self, event: WorkerEvent) -> bool:
        return False


async def test_an_undecodable_task_is_dead_lettered_even_if_its_failure_is_not_reported() -> None:
    worker = WorkerParts(RefusingSink())
    intake, channel = await worker.open()
    body = {"job_id": str(uuid4()), "attempt_id": str(uuid4())}
    message = FakeMessage(body=json.dumps(body).encode())
    await channel.queue.deliver(message)
    await asyncio.wait_for(intake.wait_idle(), 2)
    [reason] = worker.dead_letters()
    assert "could not be reported failed" in reason
    assert message.settled == ["ack"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"job_id": str(uuid4())}).encode(),
        json.dumps({"job_id": "nope", "attempt_id": str(uuid4())}).encode(),
        json.dumps({"job_id": str(uuid4()), "attempt_id": 7}).encode(),
    ],
)
async def test_an_undecodable_task_without_ids_is_only_dead_lettered(body: bytes) -> None:
    worker = WorkerParts()
    intake, channel = await worker.open()
    message = FakeMessage(body=body)
    await channel.queue.deliver(message)
    await asyncio.wait_for(intake.wait_idle(), 2)
    assert worker.sink.events == []
    [reason] = worker.dead_letters()
    assert reason.startswith("invalid step task: ")
    assert "reported" not in reason


@pytest.mark.parametrize(
    ("token", "expected"), [(TOKEN, TOKEN), ("x" * 65, None), (42, None), (None, None)]
)
def test_the_ids_of_an_undecodable_task_keep_only_a_usable_token(
    token: object, expected: str | None
) -> None:
    job_id, attempt_id = uuid4(), uuid4()
    body = {"job_id": str(job_id), "attempt_id": str(attempt_id), "token": token}
    assert task_ids(json.dumps(body).encode()) == TaskIds(job_id, attempt_id, expected)
