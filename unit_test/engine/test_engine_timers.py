"""Deadlines, wake-up times and retry delays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from engine_builders import Run, at, current, step, workflow

from segue.engine.backoff import backoff_s, retry_delay_s, unit_jitter
from segue.engine.events import StepFailed, StepHeartbeat, StepStarted, StepSucceeded, TimerFired
from segue.engine.timers import later, next_wakeup
from segue.protocol.messages import ErrorInfo
from segue.workflows.model import RetryPolicy

BOOM = ErrorInfo(kind="Boom", message="it broke")


def test_a_dispatched_attempt_without_dispatch_timeout_needs_no_wakeup() -> None:
    assert next_wakeup(Run.submitted(workflow(step("a", dispatch_timeout_s=None))).live) is None


def test_wakeup_is_the_earliest_deadline() -> None:
    wf = workflow(step("a", heartbeat_s=30, timeout_s=50), timeout_s=45)
    run = Run.submitted(wf)
    run.apply(StepStarted(run.attempt_id), 10)
    assert next_wakeup(run.live) == at(40)  # heartbeat
    run.apply(StepHeartbeat(run.attempt_id), 25)
    assert next_wakeup(run.live) == at(45)  # job timeout
    run.apply(StepHeartbeat(run.attempt_id), 30)
    assert next_wakeup(run.live) == at(45)


def test_wakeup_follows_dispatch_timeout_then_retry_due() -> None:
    retry = {"max_attempts": 2, "initial_delay_s": 7, "jitter": 0}
    run = Run.submitted(workflow(step("a", dispatch_timeout_s=20, retry=retry)))
    assert next_wakeup(run.live) == at(20)
    run.apply(StepFailed(run.attempt_id, BOOM), 3)
    assert next_wakeup(run.live) == at(10)


def test_a_finished_job_needs_no_wakeup() -> None:
    run = Run.submitted(workflow(step("a"), timeout_s=10))
    run.apply(StepSucceeded(run.attempt_id, {}), 1)
    assert next_wakeup(run.live) is None


@pytest.mark.parametrize(
    "scenario", ["retry_due", "dispatch_timeout", "heartbeat", "step_timeout", "job_timeout"]
)
def test_wakeup_moves_forward_after_the_timer_fires(scenario: str) -> None:
    retry = {"max_attempts": 3, "initial_delay_s": 0.000001, "jitter": 0}
    wf = workflow(
        step("a", dispatch_timeout_s=0.000001, heartbeat_s=0.5, timeout_s=0.75, retry=retry),
        timeout_s=1000 if scenario != "job_timeout" else 2,
    )
    run = Run.submitted(wf)
    if scenario == "retry_due":
        run.apply(StepFailed(run.attempt_id, BOOM), 0)
    elif scenario in ("heartbeat", "step_timeout"):
        run.apply(StepStarted(run.attempt_id), 0)
        if scenario == "step_timeout":
            run.apply(StepHeartbeat(run.attempt_id), 0.4)
    wakeup = next_wakeup(run.live)
    assert wakeup is not None
    if scenario == "job_timeout":
        wakeup = at(2)
    decision = run.apply(TimerFired(), (wakeup - at(0)).total_seconds())
    assert decision.records, f"the {scenario} timer must do something"
    after = next_wakeup(run.live)
    assert after is None or after > wakeup


def test_later_is_strictly_later_and_saturates() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    assert later(moment, 1e-9) == moment + timedelta(microseconds=1)
    assert later(moment, 0) == moment
    assert later(moment, float("nan")) == moment
    assert later(moment, 1e300) == datetime.max.replace(tzinfo=UTC)
    assert later(moment, float("inf")) == datetime.max.replace(tzinfo=UTC)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(initial_delay_s=2, backoff_factor=3, max_delay_s=100)
    assert [backoff_s(policy, n) for n in range(1, 6)] == [2, 6, 18, 54, 100]


def test_backoff_never_overflows() -> None:
    policy = RetryPolicy(max_attempts=100, initial_delay_s=1, backoff_factor=1e300)
    assert backoff_s(policy, 99) == policy.max_delay_s


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(initial_delay_s=10, jitter=0.2)
    ids = [UUID(int=0), UUID(int=2**127), UUID(int=2**128 - 1)]
    assert [unit_jitter(i) for i in ids][:2] == [-1.0, 0.0]
    assert unit_jitter(ids[2]) < 1.0
    for attempt_id in ids:
        assert 8 <= retry_delay_s(policy, 1, attempt_id) <= 12


def test_scheduled_retry_is_dispatched_when_due() -> None:
    retry = {"max_attempts": 2, "initial_delay_s": 5, "jitter": 0}
    run = Run.submitted(workflow(step("a", retry=retry)))
    run.apply(StepFailed(run.attempt_id, BOOM), 1)
    decision = run.apply(TimerFired(), 6)
    assert [type(e).__name__ for e in decision.effects] == ["DispatchStep"]
    assert current(run.job).dispatched_at == at(6)
