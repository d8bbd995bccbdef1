"""One attempt, run against a fake event sink: what a handler's behaviour is reported as."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any
from uuid import uuid4

import pytest

from fakes import FakeSink
from segue.protocol import kinds
from segue.protocol.messages import (
    MAX_ERROR_DETAILS_CHARS,
    MAX_ERROR_MESSAGE_CHARS,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepSucceeded,
    StepTask,
)
from segue.worker import StepContext, step_handler
from segue.worker.attempt import Attempt, AttemptSettings, error_info, heartbeat_interval
from segue.worker.handler import StepFunction


def make_task(heartbeat_s: float | None = None) -> StepTask:
    return StepTask(
        job_id=uuid4(),
        workflow="energy_plan",
        step="optimise",
        queue="optimise",
        attempt=2,
        attempt_id=uuid4(),
        params={"horizon_years": 5},
        inputs={"prepare": {"demand_twh": 120.0}},
        heartbeat_s=heartbeat_s,
    )


def make_attempt(fn: StepFunction, sink: FakeSink, **settings: Any) -> Attempt:
    settings.setdefault("progress_interval_s", 0.01)
    return Attempt(
        make_task(), step_handler("optimise", fn), sink, AttemptSettings("w1", **settings)
    )


@pytest.mark.parametrize(
    ("task_heartbeat_s", "override_s", "expected"),
    [(None, None, 10.0), (30.0, None, 10.0), (1.5, None, 1.0), (30.0, 0.2, 0.2)],
)
def test_heartbeat_interval(
    task_heartbeat_s: float | None, override_s: float | None, expected: float
) -> None:
    assert heartbeat_interval(task_heartbeat_s, override_s) == expected


def test_error_info_names_the_exception_and_keeps_the_traceback_tail() -> None:
    def fail() -> None:
        raise ValueError("x" * 50_000)

    try:
        fail()
    except ValueError as exc:
        info = error_info(exc, "optimise")
    assert info.kind == "ValueError"
    assert info.step == "optimise"
    assert len(info.message) <= MAX_ERROR_MESSAGE_CHARS
    assert info.message.endswith("more characters)")
    assert info.details is not None
    assert len(info.details) <= MAX_ERROR_DETAILS_CHARS
    assert info.details.startswith("(")
    assert info.details.endswith("x" * 100 + "\n")  # the end: the exception line


async def test_context_exposes_the_task() -> None:
    seen: dict[str, Any] = {}

    async def handler(ctx: StepContext) -> dict[str, Any]:
        seen.update(
            step=ctx.step,
            workflow=ctx.workflow,
            attempt=ctx.attempt,
            params=ctx.params,
            inputs=ctx.inputs,
            job_id=ctx.job_id,
            attempt_id=ctx.attempt_id,
        )
        return {"cost_eur": 1.5}

    sink = FakeSink()
    attempt = make_attempt(handler, sink)
    await attempt.run()
    assert seen["step"] == "optimise"
    assert seen["attempt"] == 2
    assert seen["inputs"] == {"prepare": {"demand_twh": 120.0}}
    assert seen["attempt_id"] == attempt.task.attempt_id
    [succeeded] = sink.of_type(StepSucceeded)
    assert succeeded.output == {"cost_eur": 1.5}
    assert succeeded.worker_id == "w1"
    assert succeeded.attempt_id == attempt.task.attempt_id


async def test_a_raising_handler_is_reported_failed_with_its_kind() -> None:
    def handler(ctx: StepContext) -> None:
        raise KeyError("missing")

    sink = FakeSink()
    await make_attempt(handler, sink).run()
    [failed] = sink.of_type(StepFailed)
    assert failed.error.kind == "KeyError"
    assert "missing" in failed.error.message
    assert failed.retryable


async def test_an_invalid_output_fails_the_step_for_good() -> None:
    sink = FakeSink()
    await make_attempt(lambda ctx: ["not", "a", "dict"], sink).run()
    [failed] = sink.of_type(StepFailed)
    assert failed.error.kind == kinds.INVALID_OUTPUT
    assert not failed.retryable


async def test_an_instant_step_sends_no_progress_only_its_result() -> None:
    def handler(ctx: StepContext) -> dict[str, Any]:
        for i in range(1, 1001):
            ctx.progress(i / 1000, "working")
        return {"done": True}

    sink = FakeSink()
    await make_attempt(handler, sink, progress_interval_s=0.5).run()
    assert [type(event) for event in sink.events] == [StepSucceeded]


async def test_progress_from_a_thread_arrives_at_a_bounded_rate_before_the_result() -> None:
    def handler(ctx: StepContext) -> dict[str, Any]:
        for i in range(25):
            ctx.progress(i / 25, "working")
            time.sleep(0.01)
        ctx.progress(1.0, "done")
        return {"done": True}

    sink = FakeSink()
    await make_attempt(handler, sink, progress_interval_s=0.1).run()
    fractions = [event.fraction for event in sink.of_type(StepProgressed)]
    assert 1 <= len(fractions) <= 3, "the first after 0.1 s, then one per 0.1 s at most"
    assert fractions == sorted(fractions)
    assert fractions[-1] < 1.0, "the report pending at the end is dropped"
    assert isinstance(sink.events[-1], StepSucceeded)


async def test_a_blocking_handler_heartbeats_while_it_blocks() -> None:
    def handler(ctx: StepContext) -> None:
        time.sleep(0.5)

    sink = FakeSink()
    await make_attempt(handler, sink, heartbeat_interval_s=0.1).run()
    assert len(sink.of_type(StepHeartbeat)) >= 3
    assert isinstance(sink.events[-1], StepSucceeded)


async def test_cancel_stops_an_async_handler_and_reports_nothing() -> None:
    cancelled = asyncio.Event()

    async def handler(ctx: StepContext) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sink = FakeSink()
    attempt = make_attempt(handler, sink)
    run = asyncio.create_task(attempt.run())
    await asyncio.sleep(0.05)
    attempt.cancel("job cancelled")
    await asyncio.wait_for(run, 2)
    assert cancelled.is_set()
    assert attempt.ctx.cancelled
    assert not sink.of_type(StepSucceeded)
    assert not sink.of_type(StepFailed)


async def test_cancel_sets_the_flag_a_blocking_handler_watches() -> None:
    saw_cancel = threading.Event()

    def handler(ctx: StepContext) -> dict[str, Any]:
        while not ctx.cancelled:
            time.sleep(0.01)
        saw_cancel.set()
        return {"partial": True}

    sink = FakeSink()
    attempt = make_attempt(handler, sink)
    run = asyncio.create_task(attempt.run())
    await asyncio.sleep(0.05)
    attempt.cancel("job cancelled")
    await asyncio.wait_for(run, 2)
    assert saw_cancel.is_set()
    assert not sink.of_type(StepSucceeded)


async def test_abandoning_an_attempt_reports_nothing() -> None:
    sink = FakeSink()
    attempt = make_attempt(lambda ctx: time.sleep(0.3), sink)
    run = asyncio.create_task(attempt.run())
    await asyncio.sleep(0.05)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert attempt.ctx.cancelled
    assert not sink.of_type(StepSucceeded)


class FlakySink(FakeSink):
    """Refuses the first ``failures`` results, as a broker that is restarting would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def send(self, event: Any) -> bool:
        if isinstance(event, StepSucceeded):
            while self.failures:
                self.failures -= 1
                await asyncio.sleep(0.15)  # the reporter's retry delay
            self.events.append(event)
            return True
        return await super().send(event)


async def test_heartbeats_go_on_while_the_result_is_retried_and_stop_once_it_is_sent() -> None:
    sink = FlakySink(failures=3)

    async def instant(ctx: StepContext) -> dict[str, Any]:
        return {"done": True}

    await make_attempt(instant, sink, heartbeat_interval_s=0.1).run()
    beats = len(sink.of_type(StepHeartbeat))
    await asyncio.sleep(0.3)

    assert beats >= 3, "no heartbeat while the result waited for the broker"
    assert len(sink.of_type(StepHeartbeat)) == beats, "heartbeats after the result was sent"
    assert len(sink.of_type(StepSucceeded)) == 1
