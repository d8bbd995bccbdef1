"""The worker SDK against real RabbitMQ, with the test playing the orchestrator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from segue.broker.boundary import REASON_HEADER, SOURCE_QUEUE_HEADER
from segue.protocol import kinds
from segue.protocol.messages import (
    Event,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from segue.worker import BrokerUnavailableError, StepContext, StepHandler, Worker, step_handler

from .sdk_harness import Harness, make_task


def is_terminal(event: Event) -> bool:
    return isinstance(event, StepSucceeded | StepFailed)


def worker_for(harness: Harness, handlers: list[StepHandler], **options: Any) -> Worker:
    options.setdefault("worker_id", "w-test")
    return Worker(handlers, amqp_url=harness.url, namespace=harness.names.namespace, **options)


async def test_a_task_is_reported_started_then_progress_then_succeeded(harness: Harness) -> None:
    @step_handler("sdk_async")
    async def optimise(ctx: StepContext) -> dict[str, Any]:
        for part in range(1, 4):
            ctx.progress(part / 4, f"part {part}")
            await asyncio.sleep(0.15)
        ctx.progress(1.0, "done")
        return {"cost_eur": ctx.params["x"] * 2, "prepared": ctx.inputs["prepare"]}

    await harness.watch_events()
    task = make_task("sdk_async", params={"x": 21}, inputs={"prepare": {"ok": True}})
    async with worker_for(harness, [optimise], progress_interval_s=0.1):
        await harness.publish_task(task)
        events = await harness.events_until(is_terminal)

    started, *middle, succeeded = events
    assert isinstance(started, StepStarted)
    assert not started.redelivered
    progress = [e for e in middle if isinstance(e, StepProgressed)]
    assert progress, "progress reports arrive once an interval has passed"
    assert [p.fraction for p in progress] == sorted(p.fraction for p in progress)
    assert {p.message for p in progress} <= {"part 1", "part 2", "part 3"}
    assert isinstance(succeeded, StepSucceeded)
    assert succeeded.output == {"cost_eur": 42, "prepared": {"ok": True}}
    assert {(e.job_id, e.attempt_id, e.worker_id, e.token) for e in events} == {
        (task.job_id, task.attempt_id, "w-test", task.token)
    }, "every report carries the task's token"
    assert all(e.sent_at is not None for e in events)
    assert await harness.task_queue_depth("sdk_async") == 0, "the task was acknowledged"


async def test_an_instant_step_sends_only_started_and_its_result(harness: Harness) -> None:
    @step_handler("sdk_async")
    async def instant(ctx: StepContext) -> dict[str, Any]:
        for part in range(1, 11):
            ctx.progress(part / 10, f"part {part}")
        return {"ok": True}

    await harness.watch_events()
    async with worker_for(harness, [instant], progress_interval_s=0.2):
        await harness.publish_task(make_task("sdk_async"))
        events = await harness.events_until(is_terminal)
        events += await harness.quiet_for(0.4)

    assert [e.type for e in events] == ["step_started", "step_succeeded"]


@pytest.mark.parametrize(
    ("body", "kind", "retryable"),
    [
        ("raise", "ZeroDivisionError", True),
        ("bad_output", kinds.INVALID_OUTPUT, False),
    ],
)
async def test_a_failing_handler_is_reported_failed_with_its_kind(
    harness: Harness, body: str, kind: str, retryable: bool
) -> None:
    @step_handler("sdk_blocking")
    def compute(ctx: StepContext) -> Any:
        if body == "raise":
            return 1 / 0
        return {"not", "json"}

    await harness.watch_events()
    async with worker_for(harness, [compute]):
        await harness.publish_task(make_task("sdk_blocking"))
        events = await harness.events_until(is_terminal)

    failed = events[-1]
    assert isinstance(failed, StepFailed)
    assert failed.error.kind == kind
    assert failed.error.step == "sdk_blocking"
    assert failed.retryable is retryable
    if body == "raise":
        assert failed.error.details is not None
        assert "ZeroDivisionError" in failed.error.details


async def test_a_blocking_handler_keeps_heartbeating(harness: Harness) -> None:
    @step_handler("sdk_blocking")
    def crunch(ctx: StepContext) -> dict[str, Any]:
        time.sleep(2.5)
        return {"done": True}

    await harness.watch_events()
    # heartbeat_s=3 -> a heartbeat every second, from the task itself
    async with worker_for(harness, [crunch]):
        await harness.publish_task(make_task("sdk_blocking", heartbeat_s=3))
        events = await harness.events_until(is_terminal)

    assert len([e for e in events if isinstance(e, StepHeartbeat)]) >= 2
    assert isinstance(events[-1], StepSucceeded)


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_concurrency_bounds_the_steps_running_at_once(
    harness: Harness, concurrency: int
) -> None:
    @step_handler("sdk_async")
    async def slow(ctx: StepContext) -> None:
        await asyncio.sleep(0.4)

    @step_handler("sdk_blocking")
    def slow_blocking(ctx: StepContext) -> None:
        time.sleep(0.4)

    await harness.watch_events()
    tasks = [make_task("sdk_async"), make_task("sdk_blocking"), make_task("sdk_async")]
    async with worker_for(harness, [slow, slow_blocking], concurrency=concurrency):
        for task in tasks:
            await harness.publish_task(task)
        events: list[Event] = []
        while len([e for e in events if is_terminal(e)]) < len(tasks):
            events.append(await harness.next_event())

    running = peak = 0
    for event in events:
        if isinstance(event, StepStarted):
            running += 1
            peak = max(peak, running)
        elif is_terminal(event):
            running -= 1
    assert peak == concurrency
    assert all(isinstance(e, StepSucceeded) for e in events if is_terminal(e))


async def test_a_redelivered_task_is_reported_as_such(harness: Harness) -> None:
    @step_handler("sdk_async")
    async def noop(ctx: StepContext) -> None:
        return None

    await harness.watch_events()
    task = make_task("sdk_async")
    await harness.publish_task(task)
    # A worker that dies before acknowledging: the broker delivers the task again.
    queue = await harness.channel.get_queue(harness.names.task_queue("sdk_async"))
    delivery = await queue.get(timeout=5)
    assert delivery is not None
    await delivery.nack(requeue=True)

    async with worker_for(harness, [noop]):
        started = await harness.next_event()

    assert isinstance(started, StepStarted)
    assert started.redelivered


async def test_cancel_stops_an_async_handler(harness: Harness) -> None:
    handler_entered = asyncio.Event()
    handler_cancelled = asyncio.Event()

    @step_handler("sdk_async")
    async def endless(ctx: StepContext) -> None:
        handler_entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise

    @step_handler("sdk_other")
    async def quick(ctx: StepContext) -> dict[str, Any]:
        return {"ran": True}

    await harness.watch_events()
    task = make_task("sdk_async")
    async with worker_for(harness, [endless, quick]):
        await harness.publish_task(task)
        assert isinstance(await harness.next_event(), StepStarted)
        await asyncio.wait_for(handler_entered.wait(), 5)
        await harness.publish_cancel(task)
        await asyncio.wait_for(handler_cancelled.wait(), 5)
        after_cancel = await harness.quiet_for(0.5)
        # The slot is free again: the next task runs.
        await harness.publish_task(make_task("sdk_other"))
        next_events = await harness.events_until(is_terminal)

    assert not [e for e in after_cancel if is_terminal(e)], "a cancelled attempt reports nothing"
    assert isinstance(next_events[-1], StepSucceeded)


async def test_cancel_sets_ctx_cancelled_for_a_blocking_handler(harness: Harness) -> None:
    entered = threading.Event()
    noticed = threading.Event()

    @step_handler("sdk_blocking")
    def cooperative(ctx: StepContext) -> dict[str, Any]:
        entered.set()
        deadline = time.monotonic() + 30
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        if ctx.cancelled:
            noticed.set()
        return {"stopped_early": True}

    await harness.watch_events()
    task = make_task("sdk_blocking")
    async with worker_for(harness, [cooperative]):
        await harness.publish_task(task)
        assert isinstance(await harness.next_event(), StepStarted)
        await asyncio.to_thread(entered.wait, 5)
        await harness.publish_cancel(task)
        await asyncio.to_thread(noticed.wait, 5)
        after_cancel = await harness.quiet_for(0.5)

    assert noticed.is_set()
    assert not [e for e in after_cancel if is_terminal(e)]


async def test_an_invalid_task_is_dead_lettered_with_the_reason(harness: Harness) -> None:
    @step_handler("sdk_async")
    async def noop(ctx: StepContext) -> None:
        return None

    await harness.watch_events()
    await harness.watch_dead_letters()
    async with worker_for(harness, [noop]):
        await harness.publish_raw_task("sdk_async", b'{"type": "step_task", "step": "x"}')
        dead = await asyncio.wait_for(harness.dead.get(), 10)
        await harness.publish_task(make_task("sdk_async"))
        events = await harness.events_until(is_terminal)

    headers = dead.headers or {}
    reason = str(headers[REASON_HEADER])
    assert "invalid step task" in reason
    assert "job_id" in reason
    assert headers[SOURCE_QUEUE_HEADER] == harness.names.task_queue("sdk_async")
    assert isinstance(events[-1], StepSucceeded), "the worker goes on after a poison task"


async def test_an_undecodable_task_with_ids_is_reported_failed_and_dead_lettered(
    harness: Harness,
) -> None:
    @step_handler("sdk_async")
    async def noop(ctx: StepContext) -> None:
        return None

    await harness.watch_events()
    await harness.watch_dead_letters()
    task = make_task("sdk_async")
    body = task.model_dump(mode="json", exclude={"workflow"})
    async with worker_for(harness, [noop]):
        await harness.publish_raw_task("sdk_async", json.dumps(body).encode())
        failed = await harness.next_event()
        dead = await asyncio.wait_for(harness.dead.get(), 10)

    assert isinstance(failed, StepFailed)
    assert (failed.job_id, failed.attempt_id, failed.token) == (
        task.job_id,
        task.attempt_id,
        task.token,
    )
    assert failed.sent_at is not None
    assert failed.error.kind == "invalid_task"
    assert "workflow" in failed.error.message
    assert not failed.retryable
    assert "invalid step task" in str((dead.headers or {})[REASON_HEADER])


async def test_a_task_of_an_attempt_cancelled_before_it_arrived_is_dropped_unrun(
    harness: Harness,
) -> None:
    ran: list[str] = []

    @step_handler("sdk_async")
    async def record(ctx: StepContext) -> None:
        ran.append(str(ctx.attempt_id))

    await harness.watch_events()
    cancelled, later = make_task("sdk_async"), make_task("sdk_async")
    async with worker_for(harness, [record]):
        await harness.publish_cancel(cancelled, "job cancelled")
        await asyncio.sleep(0.3)  # the worker hears the cancel (another queue) first
        await harness.publish_task(cancelled)
        await harness.publish_task(later)
        events = await harness.events_until(is_terminal)
        events += await harness.quiet_for(0.3)

    assert {e.attempt_id for e in events} == {later.attempt_id}, "nothing reported of it"
    assert ran == [str(later.attempt_id)], "it never ran"
    assert await harness.task_queue_depth("sdk_async") == 0, "it was taken off its queue"


async def test_a_worker_ignores_a_cancel_for_another_worker_or_without_the_token_digest(
    harness: Harness,
) -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    @step_handler("sdk_async")
    async def endless(ctx: StepContext) -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await harness.watch_events()
    task = make_task("sdk_async")
    async with worker_for(harness, [endless], worker_id="w-test"):
        await harness.publish_task(task)
        assert isinstance(await harness.next_event(), StepStarted)
        await asyncio.wait_for(entered.wait(), 5)
        await harness.publish_cancel(task, worker_id="w-other")
        await harness.publish_cancel(task, token_digest=None)
        await harness.publish_cancel(task, token_digest="0" * 32)
        await asyncio.sleep(0.5)
        still_running = not cancelled.is_set()
        await harness.publish_cancel(task, worker_id="w-test")
        await asyncio.wait_for(cancelled.wait(), 5)

    assert still_running, "none of the three cancels was for this worker's attempt"


async def test_stop_lets_running_steps_finish_and_leaves_the_rest_queued(
    harness: Harness,
) -> None:
    @step_handler("sdk_async")
    async def slow(ctx: StepContext) -> None:
        await asyncio.sleep(0.5)

    await harness.watch_events()
    first, second = make_task("sdk_async"), make_task("sdk_async")
    worker = worker_for(harness, [slow])
    async with worker:
        await harness.publish_task(first)
        await harness.publish_task(second)
        started = await harness.next_event()
        worker.stop()
    events = await harness.quiet_for(0.5)

    assert isinstance(started, StepStarted)
    assert started.attempt_id == first.attempt_id
    assert [type(e) for e in events if not isinstance(e, StepProgressed)] == [StepSucceeded]
    assert await harness.task_queue_depth("sdk_async") == 1, "the second task was not taken"


async def test_stop_abandons_steps_that_outlive_the_grace_period(harness: Harness) -> None:
    entered = threading.Event()
    saw_cancel = threading.Event()

    @step_handler("sdk_blocking")
    def stubborn(ctx: StepContext) -> None:
        entered.set()
        deadline = time.monotonic() + 30
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        saw_cancel.set()
        time.sleep(1.0)  # keeps running after the worker has gone

    await harness.watch_events()
    worker = worker_for(harness, [stubborn], shutdown_grace_s=0.3)
    async with worker:
        await harness.publish_task(make_task("sdk_blocking"))
        assert isinstance(await harness.next_event(), StepStarted)
        await asyncio.to_thread(entered.wait, 5)
        stopping_at = time.monotonic()
        worker.stop()
    stopped_after = time.monotonic() - stopping_at
    events = await harness.quiet_for(1.5)

    assert stopped_after < 3, "the worker does not wait for an abandoned handler"
    assert saw_cancel.is_set()
    assert not [e for e in events if is_terminal(e)], "an abandoned step reports nothing"


async def test_an_unreachable_broker_fails_at_start_with_a_clear_error() -> None:
    @step_handler("sdk_async")
    async def noop(ctx: StepContext) -> None:
        return None

    worker = Worker([noop], amqp_url="amqp://guest:secret@127.0.0.1:1/", namespace="tnobroker")
    with pytest.raises(BrokerUnavailableError, match=r"127\.0\.0\.1:1") as caught:
        await worker.run()
    assert "secret" not in str(caught.value)


async def test_a_task_behind_a_long_step_goes_to_an_idle_worker(harness: Harness) -> None:
    release = asyncio.Event()

    @step_handler("sdk_async")
    async def step(ctx: StepContext) -> None:
        if ctx.params.get("long"):
            await release.wait()

    await harness.watch_events()
    long_task, waiting_task, later_task = (
        make_task("sdk_async", params={"long": True}),
        make_task("sdk_async"),
        make_task("sdk_async"),
    )
    busy = worker_for(harness, [step], worker_id="w-busy")
    async with busy:
        await harness.publish_task(long_task)
        first = await harness.next_event()
        # The busy worker's prefetch takes this task at once, but must not keep it.
        await harness.publish_task(waiting_task)
        await asyncio.sleep(0.1)
        async with worker_for(harness, [step], worker_id="w-idle"):
            events = await harness.events_until(is_terminal, wait_s=5)
        release.set()
        events += await harness.events_until(is_terminal)
        # The busy worker consumes again once its slot is free.
        await harness.publish_task(later_task)
        events += await harness.events_until(is_terminal)

    assert isinstance(first, StepStarted)
    assert first.worker_id == "w-busy"
    by_attempt = {(type(e), e.attempt_id): e.worker_id for e in events}
    assert by_attempt[(StepSucceeded, waiting_task.attempt_id)] == "w-idle"
    assert by_attempt[(StepSucceeded, long_task.attempt_id)] == "w-busy"
    assert by_attempt[(StepSucceeded, later_task.attempt_id)] == "w-busy"
