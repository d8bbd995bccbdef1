"""Hardening of the engine: update sequence numbers, stops for work a worker must not
do, fencing by worker and by attempt token, job owners, cancels that overtook their
submission, timer horizons, bounded progress history and engine failures on timers."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

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
    tasks,
    types,
    workflow,
)

from segue.engine import machine
from segue.engine.effects import (
    Decision,
    NotifyProgress,
    NotifyResult,
    NotifyStatus,
    StopAttempt,
)
from segue.engine.events import (
    CancelRequested,
    Event,
    JobSubmitted,
    RerunRequested,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    TimerFired,
)
from segue.engine.machine import decide
from segue.engine.progress import DENSE_PROGRESS_RECORDS
from segue.engine.state import attempt_token, new_attempt_id, token_digest
from segue.engine.timers import next_wakeup
from segue.protocol import kinds
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus

BOOM = ErrorInfo(kind="Boom", message="it broke")
SECRET = "s3cret"
WATCHED = workflow(step("a", heartbeat_s=30, retry={"max_attempts": 2, "initial_delay_s": 0}))
"""One step whose worker must beat every 30 s; a failure is retried at once."""
LIST = {"name": "cases", "type": "list", "items": {"type": "string"}, "default": ["a", "b"]}
MAPPED = workflow(
    step("each", map={"over": "params.cases", "max_concurrency": 2}), parameters=[LIST]
)


def _notices(*decisions: Decision) -> list[tuple[str, int]]:
    """(kind, seq) of every notice of the decisions, in order."""
    return [
        (type(effect).__name__, effect.seq)
        for decision in decisions
        for effect in decision.effects
        if isinstance(effect, NotifyStatus | NotifyProgress | NotifyResult)
    ]


def _not_yours(attempt_id: UUID, reason: str, worker_id: str | None) -> StopAttempt:
    """The stop answering a report of work the worker must not do (job without secret)."""
    return StopAttempt(JOB_ID, attempt_id, f"not yours to run: {reason}", worker_id=worker_id)


# --- 1. update sequence numbers ---------------------------------------------------------


def test_updates_carry_increasing_sequence_numbers() -> None:
    run = Run.submitted(pipeline(), {"mode": "fast"})
    run.apply(StepProgressed(run.attempt_id, 0.5, "meshing", worker_id="w1"), 1)
    run.apply(StepHeartbeat(run.attempt_id, worker_id="w1"), 2)  # no update: no number
    run.apply(StepSucceeded(run.attempt_id, {"grid": 7}, worker_id="w1"), 3)
    run.apply(StepSucceeded(run.attempt_id, {"report": "ok"}, worker_id="w2"), 4)
    assert _notices(*run.decisions) == [
        ("NotifyStatus", 1),  # queued
        ("NotifyStatus", 2),  # running, announced before the progress that proved it
        ("NotifyProgress", 3),
        ("NotifyStatus", 4),  # on to "report"
        ("NotifyResult", 5),
    ]
    assert run.live.update_seq == 5, "the job keeps its last number"


def test_duplicate_submission_reannounces_with_the_current_sequence_number() -> None:
    run = Run.submitted(pipeline())
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), 1)
    before = run.live
    duplicate = run.apply(JobSubmitted(JOB_ID, pipeline(), "h", {}), 2)
    assert duplicate.ignored == "duplicate submission"
    assert duplicate.effects == (NotifyStatus(JOB_ID, JobStatus.RUNNING, "prepare", seq=2),)
    assert duplicate.job == before, "a re-announcement changes nothing, not even the number"
    progress = run.apply(StepProgressed(run.attempt_id, 0.5, worker_id="w1"), 3)
    assert _notices(progress) == [("NotifyProgress", 3)]


# --- 2. stops target the worker that holds the attempt ---------------------------------


def test_orchestrator_stops_target_the_worker_holding_each_attempt() -> None:
    run = Run.submitted(MAPPED)
    item_a, item_b = (attempt.attempt_id for attempt in run.live.live_attempts)
    run.apply(StepStarted(item_a, worker_id="w1"), 1)
    cancel = run.apply(CancelRequested("stop"), 2)
    assert stops(cancel) == [
        StopAttempt(JOB_ID, item_a, "stop", worker_id="w1"),
        StopAttempt(JOB_ID, item_b, "stop", worker_id=None),  # dispatched: whoever took it
    ]


def test_stops_of_a_job_with_a_secret_prove_the_token_without_showing_it() -> None:
    run = Run.submitted(WATCHED, secret=SECRET)
    task = tasks(run.decisions[0])[0]
    assert task.token is not None
    run.apply(StepStarted(task.attempt_id, worker_id="w1", token=task.token), 1)
    lost = run.apply(TimerFired(), 31)
    stop = stops(lost)[0]
    assert (stop.attempt_id, stop.worker_id) == (task.attempt_id, "w1")
    assert stop.token_digest == token_digest(task.token)
    assert stop.token_digest != task.token


# --- 3. reports of work the worker must not do -----------------------------------------


def test_started_of_a_cancelled_attempt_is_answered_with_a_stop() -> None:
    run = Run.submitted(pipeline())
    attempt_id = run.attempt_id
    run.apply(CancelRequested("stop"), 1)
    cancelled = run.live
    decision = run.apply(StepStarted(attempt_id, worker_id="w1"), 2)
    assert decision.ignored == "job is cancelled"
    assert decision.effects == (_not_yours(attempt_id, "job is cancelled", "w1"),)
    assert decision.job == cancelled
    assert types(decision.records) == ["event_ignored"]
    assert decision.records[0].data["worker_id"] == "w1"


@pytest.mark.parametrize(
    ("report", "stopped"),
    [
        (lambda a: StepStarted(a, worker_id="w1"), True),
        (lambda a: StepProgressed(a, 0.5, worker_id="w1"), True),
        (lambda a: StepHeartbeat(a, worker_id="w1"), True),
        (lambda a: StepSucceeded(a, {"x": 1}, worker_id="w1"), False),
        (lambda a: StepFailed(a, BOOM, worker_id="w1"), False),
    ],
    ids=["started", "progress", "heartbeat", "succeeded", "failed"],
)
def test_reports_of_an_ended_attempt_are_answered_with_a_stop_but_results_are_not(
    report: Callable[[UUID], Event], stopped: bool
) -> None:
    run = Run.submitted(WATCHED)
    lost_id = run.attempt_id
    run.apply(StepStarted(lost_id, worker_id="w1"), 0)
    run.apply(TimerFired(), 30)  # w1 looks lost: its attempt ends, a new one is dispatched
    live = run.live
    decision = run.apply(report(lost_id), 31)
    assert decision.ignored == "stale attempt (already lost)"
    assert decision.job == live
    expected = (_not_yours(lost_id, "stale attempt (already lost)", "w1"),)
    assert decision.effects == (expected if stopped else ())


def test_a_report_of_a_scheduled_attempt_is_answered_with_a_stop() -> None:
    wf = workflow(step("a", retry={"max_attempts": 2, "initial_delay_s": 10}))
    run = Run.submitted(wf)
    run.apply(StepFailed(run.attempt_id, BOOM, worker_id="w1"), 1)
    scheduled = current(run.job)
    assert scheduled.status is AttemptStatus.SCHEDULED
    decision = run.apply(StepHeartbeat(scheduled.attempt_id, worker_id="w2"), 2)
    reason = "attempt not dispatched yet"
    assert decision.effects == (_not_yours(scheduled.attempt_id, reason, "w2"),)


def test_a_second_worker_s_started_is_answered_with_a_stop_for_it_alone() -> None:
    run = Run.submitted(pipeline())
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1"), 1)
    running = run.live
    decision = run.apply(StepStarted(attempt_id, worker_id="w2"), 2)
    reason = "attempt runs on worker 'w1'"
    assert decision.ignored == reason
    assert decision.effects == (_not_yours(attempt_id, reason, "w2"),)
    assert decision.job == running
    assert current(run.job).worker_id == "w1"


def test_the_stop_answering_a_started_names_that_start_only() -> None:
    run = Run.submitted(pipeline())
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1", run_id="first"), 1)
    refused = run.apply(StepStarted(attempt_id, worker_id="w2", run_id="r1"), 2)
    (answer,) = refused.effects
    assert isinstance(answer, StopAttempt)
    assert (answer.worker_id, answer.run_id) == ("w2", "r1")
    # w2's confirm of that ``started`` was lost; the task came back to it after w1
    # went away: the new start holds the attempt, and the answer above cannot stop it.
    taken = run.apply(StepStarted(attempt_id, worker_id="w2", redelivered=True, run_id="r2"), 3)
    (handover,) = taken.effects
    assert isinstance(handover, StopAttempt)
    assert (handover.worker_id, handover.run_id) == ("w1", None)
    assert current(run.job).worker_id == "w2"


def test_a_copy_of_an_earlier_start_does_not_take_the_attempt_back() -> None:
    # w1 started the task (a redelivery), w2 took it over with a later redelivered
    # start; then a copy of w1's start is handled again (an event redelivered after
    # an orchestrator crash). Taking the attempt back on it would stop w2, which
    # runs it, while w1 stopped long ago: nobody would run the step.
    run = Run.submitted(pipeline())
    attempt_id = run.attempt_id
    first = StepStarted(attempt_id, "w1", redelivered=True, run_id="a", sent_at=at(1))
    run.apply(first, 1.1)
    takeover = StepStarted(attempt_id, "w2", redelivered=True, run_id="b", sent_at=at(2))
    assert run.apply(takeover, 2.1).records[0].type == "step_redelivered"
    again = run.apply(first, 3)
    assert again.ignored is not None
    assert again.ignored.startswith("stale start")
    assert current(run.job).worker_id == "w2", "w2 keeps the attempt"
    (answer,) = again.effects
    assert isinstance(answer, StopAttempt)
    assert (answer.worker_id, answer.run_id) == ("w1", "a"), "only the copy's start is stopped"


def test_a_takeover_sent_after_the_holder_started_moves_the_attempt() -> None:
    run = Run.submitted(pipeline())
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, "w1", run_id="a", sent_at=at(1)), 1.1)
    takeover = StepStarted(attempt_id, "w2", redelivered=True, run_id="b", sent_at=at(5))
    assert run.apply(takeover, 5.1).records[0].type == "step_redelivered"
    assert current(run.job).worker_id == "w2"


def test_the_result_of_the_worker_a_takeover_took_the_attempt_from_is_applied() -> None:
    """A task delivered twice: w2's copy came back marked redelivered (a busy worker
    handed it back), so w2's ``started`` took the attempt from w1, which was alive.
    Handled out of order after a backlog, w2's result came first and was refused;
    w1's result then ends the step, and w2 is told to stop."""
    run = Run.submitted(pipeline())
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, "w1", run_id="a", sent_at=at(1)), 1.1)
    refused = run.apply(StepSucceeded(attempt_id, {"by": "w2"}, worker_id="w2"), 9)
    assert refused.ignored == "attempt runs on worker 'w1'"
    takeover = StepStarted(attempt_id, "w2", redelivered=True, run_id="b", sent_at=at(2))
    assert run.apply(takeover, 9.1).records[0].type == "step_redelivered"
    assert (current(run.job).worker_id, current(run.job).previous_worker_id) == ("w2", "w1")

    taken_back = run.apply(StepSucceeded(attempt_id, {"by": "w1"}, worker_id="w1"), 9.2)

    finished = run.job.attempt(attempt_id) if run.job is not None else None
    assert finished is not None
    assert (finished.status, finished.output, finished.worker_id) == (
        AttemptStatus.SUCCEEDED,
        {"by": "w1"},
        "w1",
    )
    assert [stop.worker_id for stop in stops(taken_back)] == ["w2"]
    assert [record.type for record in taken_back.records][:2] == [
        "step_taken_back",
        "step_succeeded",
    ]
    assert taken_back.records[0].data["worker_id"] == "w1"
    assert taken_back.records[0].data["previous_worker_id"] == "w2"
    late = run.apply(StepSucceeded(attempt_id, {"by": "w2"}, worker_id="w2"), 9.3)
    assert late.ignored is not None, "one result per attempt"


def test_heartbeats_of_the_worker_a_takeover_took_the_attempt_from_are_still_fenced() -> None:
    run = Run.submitted(WATCHED)
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, "w1", sent_at=at(0)), 0.1)
    run.apply(StepStarted(attempt_id, "w2", redelivered=True, sent_at=at(1)), 1.1)
    beat = run.apply(StepHeartbeat(attempt_id, worker_id="w1"), 2)
    assert beat.ignored == "attempt runs on worker 'w2'"
    assert current(run.job).worker_id == "w2"


def test_a_repeated_started_of_the_worker_running_it_is_ignored_without_a_stop() -> None:
    run = Run.submitted(pipeline())
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1"), 1)
    for again in (
        StepStarted(attempt_id, worker_id="w1"),
        StepStarted(attempt_id, worker_id="w1", redelivered=True),
        StepStarted(attempt_id),  # a worker without id may be the one running it
    ):
        decision = run.apply(again, 2)
        assert decision.ignored == "attempt already running"
        assert decision.effects == (), "the worker running the attempt must go on"


def test_heartbeat_and_result_of_another_worker_are_fenced() -> None:
    run = Run.submitted(WATCHED)
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1"), 0)
    running = run.live
    reason = "attempt runs on worker 'w1'"
    beat = run.apply(StepHeartbeat(attempt_id, worker_id="w2"), 20)
    assert (beat.ignored, beat.job) == (reason, running)
    assert beat.effects == (), "it may have overtaken w2's redelivered started: no stop"
    result = run.apply(StepSucceeded(attempt_id, {"x": 1}, worker_id="w2"), 21)
    assert (result.ignored, result.job) == (reason, running)
    assert result.effects == (), "a result is not answered"
    assert result.records[0].data["worker_id"] == "w2"
    lost = run.apply(TimerFired(), 30)
    assert lost.records[0].type == "step_lost", "w2's heartbeat kept nothing alive"
    assert stops(lost)[0].worker_id == "w1"


def test_a_redelivered_task_is_taken_from_the_previous_worker() -> None:
    run = Run.submitted(WATCHED)
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1"), 0)
    moved = run.apply(StepStarted(attempt_id, worker_id="w2", redelivered=True), 10)
    away = "task redelivered after worker 'w1' went away"
    assert moved.effects == (StopAttempt(JOB_ID, attempt_id, away, worker_id="w1"),)
    assert current(run.job).worker_id == "w2"
    late = run.apply(StepHeartbeat(attempt_id, worker_id="w1"), 11)
    assert late.ignored == "attempt runs on worker 'w2'"
    assert late.effects == (), "w1 was told to stop with the handover"


def test_a_redelivery_that_quarantines_the_job_stops_the_new_worker_too() -> None:
    wf = workflow(step("a", max_crashes=1))
    run = Run.submitted(wf)
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1"), 0)
    final = run.apply(StepStarted(attempt_id, worker_id="w2", redelivered=True), 10)
    assert run.live.status is JobStatus.FAILED
    assert [stop.worker_id for stop in stops(final)] == ["w1", "w2"]
    assert stops(final)[1].reason == "not yours to run: job is failed"


# --- 4. attempt ids and tokens of a job with a secret ----------------------------------


def test_attempt_ids_of_a_job_with_a_secret_are_not_derived_from_the_job_id() -> None:
    run = Run.submitted(WATCHED, secret=SECRET)
    first = run.attempt_id
    assert first != new_attempt_id(JOB_ID, 1), "guessable from the job id"
    assert first == new_attempt_id(JOB_ID, 1, SECRET)
    assert first.version == 4
    assert new_attempt_id(JOB_ID, 1, "another secret") != first
    token = attempt_token(run.live, first)
    run.apply(StepFailed(first, BOOM, worker_id="w1", token=token), 1)
    assert run.attempt_id == new_attempt_id(JOB_ID, 2, SECRET)
    assert Run.submitted(WATCHED).attempt_id == new_attempt_id(JOB_ID, 1)


def test_each_task_carries_its_own_attempt_token() -> None:
    run = Run.submitted(WATCHED, secret=SECRET)
    first = tasks(run.decisions[0])[0]
    run.apply(StepFailed(first.attempt_id, BOOM, worker_id="w1", token=first.token), 1)
    second = tasks(run.decisions[-1])[0]
    assert first.token == attempt_token(run.live, first.attempt_id)
    assert second.token == attempt_token(run.live, second.attempt_id)
    assert None not in (first.token, second.token)
    assert first.token != second.token


@pytest.mark.parametrize("token", [None, "0" * 32, "another attempt's"])
def test_report_without_the_attempt_token_is_rejected(token: str | None) -> None:
    run = Run.submitted(WATCHED, secret=SECRET)
    attempt_id = run.attempt_id
    if token == "another attempt's":
        token = attempt_token(run.live, new_attempt_id(JOB_ID, 2, SECRET))
    queued = run.live
    for report in (
        StepStarted(attempt_id, worker_id="w1", token=token),
        StepSucceeded(attempt_id, {"x": 1}, worker_id="w1", token=token),
    ):
        decision = decide(queued, report, at(1))
        assert decision.rejected is not None
        assert decision.rejection_kind == kinds.WRONG_TOKEN
        assert decision.job == queued
        assert (decision.effects, decision.records) == ((), ())


def test_a_report_without_the_token_gets_no_stop_even_for_an_ended_attempt() -> None:
    run = Run.submitted(WATCHED, secret=SECRET)
    attempt_id = run.attempt_id
    run.apply(CancelRequested("stop"), 1)
    forged = run.apply(StepStarted(attempt_id, worker_id="w1"), 2)
    assert forged.rejection_kind == kinds.WRONG_TOKEN
    assert forged.effects == ()
    token = attempt_token(run.live, attempt_id)
    assert token is not None
    genuine = run.apply(StepStarted(attempt_id, worker_id="w1", token=token), 3)
    assert stops(genuine) == [
        StopAttempt(
            JOB_ID,
            attempt_id,
            "not yours to run: job is cancelled",
            worker_id="w1",
            token_digest=token_digest(token),
        )
    ]


def test_a_job_without_a_secret_sends_and_checks_no_tokens() -> None:
    run = Run.submitted(WATCHED)
    assert tasks(run.decisions[0])[0].token is None
    decision = run.apply(StepStarted(run.attempt_id, worker_id="w1", token="anything"), 1)
    assert decision.rejected is None
    assert current(run.job).status is AttemptStatus.RUNNING


# --- 5. job owners ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requester", "admin", "allowed"),
    [("alice", False, True), ("bob", True, True), ("bob", False, False), (None, False, False)],
    ids=["owner", "admin", "another-user", "no-user"],
)
def test_only_the_owner_or_an_admin_may_cancel_or_rerun(
    requester: str | None, admin: bool, allowed: bool
) -> None:
    run = Run.submitted(WATCHED, owner="alice")
    running = run.live
    cancel = decide(running, CancelRequested("stop", requester=requester, admin=admin), at(1))
    run.apply(StepFailed(run.attempt_id, BOOM, retryable=False), 2)
    failed = run.live
    rerun = decide(failed, RerunRequested(requester=requester, admin=admin), at(3))
    for decision, before in ((cancel, running), (rerun, failed)):
        if allowed:
            assert decision.rejected is None
            assert decision.job is not None
            assert decision.job.status is not before.status
        else:
            assert decision.rejection_kind == kinds.FORBIDDEN
            assert decision.job == before
            assert (decision.effects, decision.records) == ((), ())


def test_anyone_may_cancel_a_job_without_an_owner() -> None:
    run = Run.submitted(WATCHED)
    decision = run.apply(CancelRequested("stop", requester="bob"), 1)
    assert decision.rejected is None
    assert run.live.status is JobStatus.CANCELLED


# --- 6. a cancel that overtook its submission ------------------------------------------


def test_a_cancel_that_overtook_its_submission_ends_the_job_before_it_runs() -> None:
    decision = submit(pipeline(), cancelled="cancelled by client")
    job = decision.job
    assert job is not None
    error = ErrorInfo(kind=kinds.CANCELLED, message="cancelled by client")
    assert (job.status, job.error, job.finished_at) == (JobStatus.CANCELLED, error, T0)
    assert job.attempts == ()
    assert types(decision.records) == ["job_submitted", "job_cancelled"]
    assert decision.records[1].data["before_submission"] is True
    assert decision.effects == (NotifyResult(JOB_ID, JobStatus.CANCELLED, error=error, seq=1),)
    assert next_wakeup(job) is None


# --- 7. timers judged at the horizon the orchestrator has heard up to -------------------


def test_a_backlog_horizon_keeps_a_live_attempt_from_being_lost() -> None:
    run = Run.submitted(WATCHED)
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), 0)
    run.apply(StepHeartbeat(run.attempt_id, worker_id="w1"), 20)  # beats due by 50
    running = run.live
    without_horizon = decide(running, TimerFired(), at(60)).job
    assert without_horizon is not None
    assert without_horizon.attempts[0].status is AttemptStatus.LOST, "w1 would look lost"
    behind = run.apply(TimerFired(horizon=at(45)), 60)  # events of 45..60 not read yet
    assert behind.ignored == "no deadline due"
    assert behind.job == running
    run.apply(StepHeartbeat(run.attempt_id, worker_id="w1"), 61)  # the backlog arrives
    assert run.apply(TimerFired(horizon=at(61)), 62).ignored == "no deadline due"
    assert current(run.job).status is AttemptStatus.RUNNING


def test_a_horizon_after_now_is_judged_at_now() -> None:
    run = Run.submitted(WATCHED)
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), 0)
    assert run.apply(TimerFired(horizon=at(100)), 29).ignored == "no deadline due"
    lost = run.apply(TimerFired(horizon=at(100)), 30)
    assert lost.records[0].type == "step_lost"


# --- 8. bounded progress history ------------------------------------------------------------


def test_progress_history_thins_out_but_keeps_the_whole_run() -> None:
    run = Run.submitted(WATCHED)
    first = run.attempt_id
    run.apply(StepStarted(first, worker_id="w1"), 0)
    reports = 4 * DENSE_PROGRESS_RECORDS + 3
    for n in range(reports):
        run.apply(StepProgressed(first, n / 1000, f"step {n}", worker_id="w1"), 1)
    reported = run.decisions[2:]
    recorded = [r for d in reported for r in d.records if r.type == "step_progress"]
    kept = [int(r.data["message"].split()[1]) for r in recorded]
    dense = list(range(2 * DENSE_PROGRESS_RECORDS))
    assert kept[: len(dense)] == dense, "the first reports are all kept"
    assert kept[len(dense) :] == list(range(len(dense) + 1, 4 * DENSE_PROGRESS_RECORDS, 2))
    assert all(types(d.effects) == ["NotifyProgress"] for d in reported), "all announced"
    attempt = current(run.job)
    assert (attempt.progress, attempt.progress_message) == (0.130, "step 130"), "the latest"
    assert attempt.progress_reports == reports
    run.apply(StepFailed(first, BOOM, worker_id="w1"), 2)  # retried at once
    retried = run.apply(StepProgressed(run.attempt_id, 0.5, worker_id="w1"), 3)
    assert "step_progress" in types(retried.records), "each attempt counts its own reports"


# --- 9. an engine failure on a timer -----------------------------------------------------


def _broken(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom")


def test_a_timer_that_makes_the_engine_fail_fails_the_job_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = Run.submitted(WATCHED)
    attempt_id = run.attempt_id
    run.apply(StepStarted(attempt_id, worker_id="w1"), 0)
    monkeypatch.setattr(machine, "lose", _broken)  # the heartbeat deadline's handler
    decision = run.apply(TimerFired(), 30)
    error = ErrorInfo(kind=kinds.ENGINE_ERROR, message="engine error: RuntimeError: boom", step="a")
    assert not decision.engine_error
    assert (run.live.status, run.live.error) == (JobStatus.FAILED, error)
    assert current(run.job).status is AttemptStatus.CANCELLED
    assert decision.effects == (
        StopAttempt(JOB_ID, attempt_id, "job failed", worker_id="w1"),
        NotifyResult(JOB_ID, JobStatus.FAILED, error=error, seq=3),
    )
    assert types(decision.records) == ["job_failed"]
    again = run.apply(TimerFired(), 60)
    assert again.ignored == "job is failed"
    assert again.effects == ()
    assert next_wakeup(run.live) is None, "the sweeper has nothing left to retry"


def test_a_timer_that_cannot_even_fail_the_job_is_reported_as_an_engine_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = Run.submitted(WATCHED)
    run.apply(StepStarted(run.attempt_id, worker_id="w1"), 0)
    monkeypatch.setattr(machine, "lose", _broken)
    monkeypatch.setattr(machine, "end_job", _broken)
    running = run.live
    decision = run.apply(TimerFired(), 30)
    assert decision.engine_error
    assert decision.ignored == (
        "engine error: RuntimeError: boom (and failing the job: RuntimeError: boom)"
    )
    assert decision.job == running
    assert decision.effects == ()
    assert types(decision.records) == ["engine_error"]
