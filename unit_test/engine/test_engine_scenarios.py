"""Whole job lives, event by event, as a worker fleet and clients would drive them."""

from __future__ import annotations

import pytest
from engine_builders import (
    JOB_ID,
    T0,
    Run,
    at,
    current,
    pipeline,
    step,
    stops,
    submit,
    types,
    workflow,
)

from segue.engine import machine
from segue.engine.backoff import retry_delay_s
from segue.engine.effects import DispatchStep, NotifyResult, NotifyStatus, StopAttempt
from segue.engine.events import (
    CancelRequested,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    TimerFired,
)
from segue.engine.machine import decide
from segue.engine.state import new_attempt_id
from segue.engine.timers import next_wakeup
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.workflows.model import Workflow

BOOM = ErrorInfo(kind="Boom", message="it broke")


def _finish_step(run: Run, output: dict[str, object], seconds: float) -> None:
    """The current attempt starts and succeeds with ``output``."""
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), seconds)
    run.apply(StepSucceeded(run.attempt_id, output), seconds + 1)


def _dispatched(run: Run) -> list[DispatchStep]:
    return [e for d in run.decisions for e in d.effects if isinstance(e, DispatchStep)]


def _results(run: Run) -> list[NotifyResult]:
    return [e for d in run.decisions for e in d.effects if isinstance(e, NotifyResult)]


# --- happy paths ---------------------------------------------------------------------


def test_three_steps_run_in_order_with_params_and_inputs() -> None:
    run = Run.submitted(pipeline(), {"horizon": 3})
    first = run.decisions[0]
    assert types(first.records) == ["job_submitted", "step_dispatched"]
    assert first.records[0].data["params"] == {"mode": "full", "horizon": 3}
    assert first.effects[0] == NotifyStatus(JOB_ID, JobStatus.QUEUED, "prepare", seq=1)
    _finish_step(run, {"grid": 7}, 10)
    _finish_step(run, {"cost": 1.5}, 20)
    _finish_step(run, {"report": "ok"}, 30)
    tasks = _dispatched(run)
    assert [(t.step, t.queue, t.attempt) for t in tasks] == [
        ("prepare", "q-prepare", 1),
        ("simulate", "q-simulate", 1),
        ("report", "q-report", 1),
    ]
    assert all(t.params == {"mode": "full", "horizon": 3} for t in tasks)
    assert tasks[2].inputs == {"prepare": {"grid": 7}, "simulate": {"cost": 1.5}}
    job = run.live
    assert job.status is JobStatus.SUCCEEDED
    assert job.finished_at == at(31)
    assert job.current_step == "report"
    # the result is the job's last update: queued, running, simulate, report, succeeded
    assert _results(run) == [
        NotifyResult(JOB_ID, JobStatus.SUCCEEDED, output={"report": "ok"}, seq=5)
    ]
    assert job.update_seq == 5


def test_branch_on_a_param_skips_a_step() -> None:
    run = Run.submitted(pipeline(), {"mode": "fast"})
    _finish_step(run, {"grid": 7}, 10)
    assert [t.step for t in _dispatched(run)] == ["prepare", "report"]
    assert run.decisions[-1].records[0].data["next"] == "report"


def test_status_is_announced_on_start_and_on_each_new_step() -> None:
    run = Run.submitted(pipeline(), {"mode": "fast"})
    _finish_step(run, {}, 10)
    statuses = [e for d in run.decisions for e in d.effects if isinstance(e, NotifyStatus)]
    assert [(s.status, s.step) for s in statuses] == [
        (JobStatus.QUEUED, "prepare"),
        (JobStatus.RUNNING, "prepare"),
        (JobStatus.RUNNING, "report"),
    ]


def test_invalid_params_are_rejected_with_the_reason() -> None:
    decision = submit(pipeline(), {"horizon": 0, "colour": "red"})
    assert decision.job is None
    assert decision.rejected is not None
    assert "params.horizon" in decision.rejected
    assert "params.colour: unknown parameter" in decision.rejected
    assert decision.effects == ()
    assert decision.records == ()


def test_job_timeout_sets_the_deadline_at_submission() -> None:
    run = Run.submitted(workflow(step("a"), timeout_s=100))
    assert run.live.deadline_at == at(100)


# --- failures and retries ------------------------------------------------------------

RETRYING = workflow(
    step(
        "a",
        retry={
            "max_attempts": 5,
            "initial_delay_s": 10,
            "backoff_factor": 2,
            "max_delay_s": 30,
            "jitter": 0,
            "non_retryable": ["Fatal"],
        },
    )
)


def _fail_and_release(run: Run, seconds: float) -> float:
    """The current attempt fails at ``seconds``; returns the retry's delay (then dispatches it)."""
    run.apply(StepFailed(run.attempt_id, BOOM), seconds)
    retry = current(run.job)
    assert retry.status is AttemptStatus.SCHEDULED
    assert retry.due_at is not None
    assert next_wakeup(run.live) == retry.due_at
    delay = (retry.due_at - at(seconds)).total_seconds()
    early = run.apply(TimerFired(), seconds + delay - 0.5)
    assert early.ignored == "no deadline due"
    run.apply(TimerFired(), seconds + delay)
    assert current(run.job).status is AttemptStatus.DISPATCHED
    return delay


def test_retries_back_off_exponentially_up_to_the_cap_then_fail() -> None:
    run = Run.submitted(RETRYING)
    delays = [_fail_and_release(run, 100 * n) for n in range(1, 5)]
    assert delays == [10, 20, 30, 30]
    assert [t.attempt for t in _dispatched(run)] == [1, 2, 3, 4, 5]
    run.apply(StepFailed(run.attempt_id, BOOM), 1000)
    assert run.live.status is JobStatus.FAILED
    assert run.live.error == BOOM.model_copy(update={"step": "a"})
    assert types(run.decisions[-1].records) == ["step_started", "step_failed", "job_failed"]
    seq = run.live.update_seq  # the result is the job's last update
    assert _results(run) == [NotifyResult(JOB_ID, JobStatus.FAILED, error=run.live.error, seq=seq)]


def test_retry_record_explains_the_delay_and_the_error() -> None:
    run = Run.submitted(RETRYING)
    decision = run.apply(StepFailed(run.attempt_id, BOOM), 5)
    data = decision.records[-1].data
    assert data["delay_s"] == 10
    assert data["due_at"] == at(15).isoformat()
    assert data["attempt"] == 2
    assert data["error"]["kind"] == "Boom"


@pytest.mark.parametrize(
    ("error", "retryable"),
    [(ErrorInfo(kind="Fatal", message="bad input"), True), (BOOM, False)],
    ids=["non-retryable-kind", "worker-says-not-retryable"],
)
def test_some_failures_are_never_retried(error: ErrorInfo, retryable: bool) -> None:
    run = Run.submitted(RETRYING)
    run.apply(StepFailed(run.attempt_id, error, retryable=retryable), 5)
    assert run.live.status is JobStatus.FAILED
    assert len(run.live.attempts) == 1


def test_jitter_spreads_delays_deterministically() -> None:
    jittery = workflow(step("a", retry={"max_attempts": 2, "initial_delay_s": 100, "jitter": 0.5}))
    run = Run.submitted(jittery)
    failed = StepFailed(run.attempt_id, BOOM)
    decision = run.apply(failed, 0)
    again = decide(run.decisions[0].job, failed, at(0))
    assert again == decision, "the same event must give the same delay"
    delay = decision.records[-1].data["delay_s"]
    assert 50 <= delay < 150
    assert delay == retry_delay_s(jittery.steps[0].retry, 1, new_attempt_id(JOB_ID, 2))


def test_zero_delay_retry_dispatches_at_once() -> None:
    run = Run.submitted(workflow(step("a", retry={"max_attempts": 2, "initial_delay_s": 0})))
    decision = run.apply(StepFailed(run.attempt_id, BOOM), 5)
    assert current(run.job).status is AttemptStatus.DISPATCHED
    assert types(decision.records)[-2:] == ["step_retry_scheduled", "step_dispatched"]
    assert [t.attempt for t in _dispatched(run)] == [1, 2]


# --- on_failure ----------------------------------------------------------------------

WITH_HANDLER = workflow(
    step("a", on_failure="cleanup", next="b"),
    step("b"),
    step("cleanup", retry={"max_attempts": 2, "initial_delay_s": 0}),
)


def test_on_failure_step_sees_the_failure_also_on_retry_and_ends_the_job() -> None:
    run = Run.submitted(WITH_HANDLER)
    run.apply(StepFailed(run.attempt_id, BOOM), 5)
    handler_task = _dispatched(run)[-1]
    assert handler_task.step == "cleanup"
    failure = handler_task.inputs["_failure"]
    assert failure["step"] == "a"
    assert failure["error"]["kind"] == "Boom"
    assert failure["error"]["step"] == "a"
    run.apply(StepFailed(run.attempt_id, BOOM), 6)
    assert _dispatched(run)[-1].inputs["_failure"] == failure
    _finish_step(run, {"cleaned": True}, 7)
    assert run.live.status is JobStatus.SUCCEEDED
    assert _results(run)[0].output == {"cleaned": True}


def test_failing_on_failure_step_fails_the_job_with_its_own_error() -> None:
    run = Run.submitted(WITH_HANDLER)
    run.apply(StepFailed(run.attempt_id, BOOM), 5)
    late = ErrorInfo(kind="CleanupError", message="disk full")
    run.apply(StepFailed(run.attempt_id, late, retryable=False), 6)
    assert run.live.status is JobStatus.FAILED
    assert run.live.error is not None
    assert (run.live.error.kind, run.live.error.step) == ("CleanupError", "cleanup")


def test_next_step_unknown_to_the_workflow_fails_the_job() -> None:
    run = Run.submitted(workflow(step("a", next="ghost")))
    _finish_step(run, {}, 1)
    assert run.live.status is JobStatus.FAILED
    assert run.live.error is not None
    assert run.live.error.kind == "workflow_error"
    assert "'ghost'" in run.live.error.message


# --- races between clients, workers and the broker -------------------------------------


def test_cancel_while_running_stops_the_worker_and_a_late_result_is_ignored() -> None:
    run = Run.submitted(pipeline())
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), 1)
    attempt_id = run.attempt_id
    cancel = run.apply(CancelRequested("user changed their mind"), 2)
    assert cancel.effects[0] == StopAttempt(
        JOB_ID, attempt_id, "user changed their mind", worker_id="w1"
    )
    result = cancel.effects[1]
    assert isinstance(result, NotifyResult)
    assert result.status is JobStatus.CANCELLED
    assert result.error == ErrorInfo(
        kind="cancelled", message="user changed their mind", step="prepare"
    )
    cancelled = run.live
    late = run.apply(StepSucceeded(attempt_id, {"grid": 1}), 3)
    assert late.ignored == "job is cancelled"
    assert late.job == cancelled
    assert late.effects == ()
    assert types(late.records) == ["event_ignored"]
    assert late.records[0].data["event"] == "step_succeeded"


def test_result_before_cancel_wins_and_the_cancel_is_ignored() -> None:
    run = Run.submitted(workflow(step("a")))
    run.apply(StepSucceeded(run.attempt_id, {"x": 1}), 1)
    decision = run.apply(CancelRequested(), 2)
    assert decision.ignored == "job is succeeded"
    assert run.live.status is JobStatus.SUCCEEDED
    assert len(_results(run)) == 1


def test_result_before_started_is_accepted_and_late_started_ignored() -> None:
    run = Run.submitted(workflow(step("a")))
    attempt_id = run.attempt_id
    decision = run.apply(StepSucceeded(attempt_id, {"x": 1}, worker_id="w1"), 1)
    assert run.live.status is JobStatus.SUCCEEDED
    assert types(decision.records) == ["step_started", "step_succeeded", "job_succeeded"]
    assert decision.records[0].data["event"] == "step_succeeded"
    late = run.apply(StepStarted(attempt_id, worker_id="w1"), 0.5)
    assert late.ignored == "job is succeeded"


def test_progress_after_result_is_ignored_without_a_record_and_its_worker_told_to_stop() -> None:
    run = Run.submitted(pipeline())
    first = run.attempt_id
    _finish_step(run, {}, 1)
    decision = run.apply(StepProgressed(first, 0.9, "almost", worker_id="w1"), 3)
    assert decision.ignored == "stale attempt (already succeeded)"
    assert decision.records == ()
    reason = "not yours to run: stale attempt (already succeeded)"
    assert decision.effects == (StopAttempt(JOB_ID, first, reason, worker_id="w1"),)


def test_progress_is_stored_announced_and_not_repeated() -> None:
    run = Run.submitted(pipeline())
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), 1)
    decision = run.apply(StepProgressed(run.attempt_id, 0.25, "meshing"), 2)
    assert types(decision.effects) == ["NotifyProgress"]
    assert decision.records[0].data | {"attempt_id": None} == {
        "step": "prepare",
        "attempt": 1,
        "attempt_id": None,
        "fraction": 0.25,
        "message": "meshing",
    }
    repeat = run.apply(StepProgressed(run.attempt_id, 0.25, "meshing"), 50)
    assert repeat.effects == ()
    assert repeat.records == ()
    assert current(run.job).last_seen_at == at(50)


# --- crashes and timeouts --------------------------------------------------------------

FRAGILE = workflow(step("a", heartbeat_s=30, max_crashes=2, retry={"max_attempts": 1}))


def test_lost_heartbeat_redispatches_then_quarantines_the_poison_job() -> None:
    run = Run.submitted(FRAGILE)
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), 1)
    run.apply(StepHeartbeat(run.attempt_id), 20)
    assert next_wakeup(run.live) == at(50)
    lost_id = run.attempt_id
    first = run.apply(TimerFired(), 50)
    assert types(first.effects) == ["StopAttempt", "DispatchStep"]
    assert first.effects[0] == StopAttempt(
        JOB_ID, lost_id, "heartbeat timeout after 30s", worker_id="w1"
    )
    assert types(first.records) == ["step_lost", "step_dispatched"]
    assert first.records[0].data["reason"] == "heartbeat timeout after 30s"
    assert [a.status for a in run.live.attempts] == [AttemptStatus.LOST, AttemptStatus.DISPATCHED]
    assert current(run.job).number == 1, "a crash consumes no retry"
    assert run.live.crashes == {"a": 1}
    run.apply(StepStarted(run.attempt_id, worker_id="w2"), 60)
    second = run.apply(TimerFired(), 90)
    assert types(second.effects) == ["StopAttempt", "NotifyResult"]
    assert run.live.status is JobStatus.FAILED
    assert run.live.error == ErrorInfo(
        kind="worker_lost", message="worker lost 2 times: heartbeat timeout after 30s", step="a"
    )


def test_redelivery_to_another_worker_counts_as_a_crash() -> None:
    run = Run.submitted(FRAGILE)
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1"), 1)
    moved = run.apply(StepStarted(attempt_id, worker_id="w2", redelivered=True), 40)
    assert types(moved.records) == ["step_redelivered"]
    away = "task redelivered after worker 'w1' went away"
    assert moved.effects == (StopAttempt(JOB_ID, attempt_id, away, worker_id="w1"),)
    attempt = current(run.job)
    assert (attempt.worker_id, attempt.started_at, attempt.status) == (
        "w2",
        at(40),
        AttemptStatus.RUNNING,
    )
    assert run.live.crashes == {"a": 1}
    final = run.apply(StepStarted(attempt_id, worker_id="w3", redelivered=True), 41)
    assert types(final.effects) == ["StopAttempt", "StopAttempt", "NotifyResult"]
    assert [(s.worker_id, s.reason) for s in stops(final)] == [
        ("w2", "task redelivered after worker 'w2' went away"),
        ("w3", "not yours to run: job is failed"),
    ], "the quarantined job's task stops on the previous worker and on the new one"
    assert run.live.error is not None
    assert run.live.error.message == (
        "worker lost 2 times: task redelivered after worker 'w2' went away"
    )


def test_job_timeout_stops_the_attempt_and_ends_timed_out() -> None:
    run = Run.submitted(workflow(step("a", heartbeat_s=None), timeout_s=100))
    run.apply(StepStarted(run.attempt_id), 1)
    assert run.apply(TimerFired(), 99.9).ignored == "no deadline due"
    decision = run.apply(TimerFired(), 100)
    assert types(decision.effects) == ["StopAttempt", "NotifyResult"]
    assert types(decision.records) == ["job_timed_out"]
    assert run.live.status is JobStatus.TIMED_OUT
    assert current(run.job).status is AttemptStatus.TIMED_OUT
    assert run.live.error == ErrorInfo(
        kind="job_timeout", message="job did not finish within 100s", step="a"
    )
    assert next_wakeup(run.live) is None


def test_dispatch_timeout_is_a_retryable_step_failure() -> None:
    wf = workflow(step("a", dispatch_timeout_s=20, retry={"max_attempts": 2, "initial_delay_s": 0}))
    run = Run.submitted(wf)
    first = run.attempt_id
    decision = run.apply(TimerFired(), 20)
    assert types(decision.effects) == ["StopAttempt", "DispatchStep"]
    assert run.live.attempts[0].status is AttemptStatus.TIMED_OUT
    assert decision.records[0].data["error"]["kind"] == "dispatch_timeout"
    assert run.live.status is JobStatus.QUEUED, "no worker ever started it"
    assert run.apply(StepStarted(first), 21).ignored == "stale attempt (already timed_out)"
    final = run.apply(TimerFired(), 40).job
    assert final is not None
    assert final.status is JobStatus.FAILED
    assert final.error is not None
    assert final.error.message == "no worker started the task within 20s"


@pytest.mark.parametrize("non_retryable", [[], ["step_timeout"]])
def test_step_timeout_is_a_step_failure_under_the_retry_policy(non_retryable: list[str]) -> None:
    retry = {"max_attempts": 2, "initial_delay_s": 5, "jitter": 0, "non_retryable": non_retryable}
    run = Run.submitted(workflow(step("a", timeout_s=50, heartbeat_s=20, retry=retry)))
    run.apply(StepStarted(run.attempt_id), 0)
    for seconds in (15, 30, 45):
        run.apply(StepHeartbeat(run.attempt_id), seconds)
    decision = run.apply(TimerFired(), 50)
    assert decision.effects[0] == StopAttempt(
        JOB_ID, run.live.attempts[0].attempt_id, "step did not finish within 50s"
    )
    assert run.live.attempts[0].status is AttemptStatus.TIMED_OUT
    if non_retryable:
        assert run.live.status is JobStatus.FAILED
    else:
        assert current(run.job).status is AttemptStatus.SCHEDULED
        assert next_wakeup(run.live) == at(55)


def test_engine_failure_on_a_worker_event_is_returned_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = Run.submitted(workflow(step("a", heartbeat_s=10)))
    run.apply(StepStarted(run.attempt_id), 1)

    def broken(*args: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(machine, "_apply_heartbeat", broken)
    decision = decide(run.job, StepHeartbeat(run.attempt_id), at(2))
    assert decision.ignored == "engine error: TypeError: a bug"
    assert decision.engine_error
    assert decision.job == run.job
    assert decision.effects == ()
    assert types(decision.records) == ["engine_error"]
    assert decision.records[0].data == {"event": "step_heartbeat", "error": decision.ignored}


def test_submission_is_pinned_to_its_workflow() -> None:
    wf: Workflow = pipeline()
    run = Run.submitted(wf)
    assert run.live.workflow is wf
    assert run.live.created_at == T0
    assert run.decisions[0].records[0].data["version"] == "1"
