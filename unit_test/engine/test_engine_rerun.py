"""A failed or timed-out job can be run again from the step that failed."""

from __future__ import annotations

import pytest
from engine_builders import Run, pipeline, step, types, workflow

from segue.engine.effects import DispatchStep, NotifyResult, NotifyStatus
from segue.engine.events import (
    CancelRequested,
    RerunRequested,
    StepFailed,
    StepStarted,
    StepSucceeded,
    TimerFired,
)
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus

BOOM = ErrorInfo(kind="Boom", message="it broke")


def _fail_at_simulate() -> Run:
    run = Run.submitted(pipeline(), {"horizon": 2})
    run.apply(StepSucceeded(run.attempt_id, {"grid": 7}), 1)
    run.apply(StepFailed(run.attempt_id, BOOM), 2)
    assert run.live.status is JobStatus.FAILED
    return run


def test_rerun_restarts_from_the_failed_step_keeping_earlier_outputs() -> None:
    run = _fail_at_simulate()
    decision = run.apply(RerunRequested("fixed the input data"), 10)

    job = run.live
    assert job.status is JobStatus.QUEUED
    assert job.run == 2
    assert job.error is None
    assert job.finished_at is None
    assert job.outputs == {"prepare": {"grid": 7}}
    assert types(decision.records) == ["job_rerun", "step_dispatched"]
    assert decision.records[0].data["from_step"] == "simulate"
    assert decision.records[0].data["run"] == 2
    task = next(e for e in decision.effects if isinstance(e, DispatchStep))
    assert (task.step, task.attempt) == ("simulate", 1)
    assert task.inputs == {"prepare": {"grid": 7}}
    assert isinstance(decision.effects[0], NotifyStatus)
    assert run.live.current_attempt is not None
    assert run.live.current_attempt.run == 2


def test_the_second_run_finishes_with_its_own_single_result() -> None:
    run = _fail_at_simulate()
    run.apply(RerunRequested(), 10)
    run.apply(StepStarted(run.attempt_id, "w2"), 11)
    run.apply(StepSucceeded(run.attempt_id, {"cost": 1}), 12)
    run.apply(StepSucceeded(run.attempt_id, {"report": "ok"}), 13)

    assert run.live.status is JobStatus.SUCCEEDED
    results = [e for d in run.decisions for e in d.effects if isinstance(e, NotifyResult)]
    assert [r.status for r in results] == [JobStatus.FAILED, JobStatus.SUCCEEDED]
    statuses = [a.status for a in run.live.attempts]
    assert statuses == [
        AttemptStatus.SUCCEEDED,
        AttemptStatus.FAILED,
        AttemptStatus.SUCCEEDED,
        AttemptStatus.SUCCEEDED,
    ]
    assert [a.run for a in run.live.attempts] == [1, 1, 2, 2]


def test_stale_events_of_the_first_run_are_ignored_in_the_second() -> None:
    run = _fail_at_simulate()
    old_attempt = run.attempt_id
    run.apply(RerunRequested(), 10)
    decision = run.apply(StepSucceeded(old_attempt, {"cost": 99}), 11)
    assert decision.ignored is not None
    assert run.live.status is JobStatus.QUEUED


def test_a_timed_out_job_can_be_rerun_with_a_fresh_deadline() -> None:
    wf = workflow(step("only"), timeout_s=5)
    run = Run.submitted(wf)
    timed_out = run.apply(TimerFired(), 6).job
    assert timed_out is not None
    assert timed_out.status is JobStatus.TIMED_OUT
    run.apply(RerunRequested(), 100)
    assert run.live.status is JobStatus.QUEUED
    assert run.live.deadline_at is not None
    assert run.live.deadline_at > run.live.updated_at


@pytest.mark.parametrize("ending", ["succeeded", "cancelled", "running"])
def test_only_failed_or_timed_out_jobs_can_be_rerun(ending: str) -> None:
    run = Run.submitted(workflow(step("only")))
    if ending == "succeeded":
        run.apply(StepSucceeded(run.attempt_id, {}), 1)
    elif ending == "cancelled":
        run.apply(CancelRequested(), 1)
    else:
        run.apply(StepStarted(run.attempt_id, "w"), 1)
    before = run.live
    decision = run.apply(RerunRequested(), 2)
    assert decision.ignored is not None
    assert "only failed or timed-out jobs can be rerun" in decision.ignored
    assert decision.job == before
    assert types(decision.records) == ["rerun_refused"]
    assert decision.effects == ()
