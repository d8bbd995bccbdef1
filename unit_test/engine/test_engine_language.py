"""The workflow language in the engine: inputs, output limits, map, parallel and repeat."""

from __future__ import annotations

from typing import Any

import pytest
from engine_builders import (
    JOB_ID,
    Run,
    at,
    live_ids,
    step,
    stops,
    tasks,
    types,
    workflow,
)

from segue.engine.effects import NotifyProgress, NotifyResult, NotifyStatus, StopAttempt
from segue.engine.events import (
    CancelRequested,
    RerunRequested,
    StepFailed,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    TimerFired,
)
from segue.engine.timers import next_wakeup
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus
from segue.workflows.model import Workflow

BOOM = ErrorInfo(kind="Boom", message="it broke")
FATAL = ErrorInfo(kind="Fatal", message="never again")
NO_WAIT = {"max_attempts": 2, "initial_delay_s": 0}
LIST = {"name": "cases", "type": "list", "items": {"type": "string"}, "default": ["a", "b", "c"]}


def _succeed(run: Run, seconds: float, output: dict[str, Any] | None = None) -> None:
    """The oldest live attempt succeeds with ``output`` (default ``{"n": <its item>}``)."""
    attempt = run.live.live_attempts[0]
    result = output if output is not None else {"n": attempt.item_index}
    run.apply(StepSucceeded(attempt.attempt_id, result), seconds)


def _all_tasks(run: Run) -> list[Any]:
    return tasks(*run.decisions)


# --- data passing ----------------------------------------------------------------------

PASSING = workflow(
    step("prepare", next="solve"),
    step(
        "solve",
        input={"grid": "outputs.prepare", "cells": "outputs.prepare.mesh.cells", "n": "params.n"},
    ),
    parameters=[{"name": "n", "type": "integer", "default": 4}],
)


def test_input_gives_the_task_exactly_the_named_values() -> None:
    run = Run.submitted(PASSING)
    _succeed(run, 1, {"mesh": {"cells": 12}, "other": True})
    task = _all_tasks(run)[-1]
    assert task.step == "solve"
    assert task.inputs == {"grid": {"mesh": {"cells": 12}, "other": True}, "cells": 12, "n": 4}


def test_missing_input_fails_the_step_before_any_attempt() -> None:
    run = Run.submitted(PASSING)
    decision = run.apply(StepSucceeded(run.attempt_id, {"mesh": {}}), 1)
    assert run.live.status is JobStatus.FAILED
    assert run.live.error == ErrorInfo(
        kind="input_error",
        message="input 'cells' of step 'solve' reads outputs.prepare.mesh.cells, "
        "but outputs.prepare.mesh has no key 'cells'",
        step="solve",
    )
    assert [a.step for a in run.live.attempts] == ["prepare"]
    assert types(decision.records)[-2:] == ["step_failed", "job_failed"]


def test_missing_input_takes_the_on_failure_path() -> None:
    wf = workflow(
        step("a", next="b"),
        step("b", input={"x": "outputs.a.x"}, on_failure="fix"),
        step("fix", input={"why": "outputs._failure"}),
    )
    run = Run.submitted(wf)
    _succeed(run, 1, {})
    task = _all_tasks(run)[-1]
    assert task.step == "fix"
    assert task.inputs["why"]["error"]["kind"] == "input_error"


# --- output size -----------------------------------------------------------------------


def test_output_over_the_limit_fails_the_attempt_and_is_never_retried() -> None:
    wf = workflow(step("a", retry={"max_attempts": 3}), max_output_bytes=20)
    run = Run.submitted(wf)
    decision = run.apply(StepSucceeded(run.attempt_id, {"text": "x" * 20}), 1)
    assert run.live.status is JobStatus.FAILED
    assert len(run.live.attempts) == 1
    assert run.live.attempts[0].status is AttemptStatus.FAILED
    assert run.live.error == ErrorInfo(
        kind="output_too_large",
        message="output of step 'a' is 31 bytes, over the limit of 20 bytes; "
        "pass large data by reference (a URL or path)",
        step="a",
    )
    assert "a" not in run.live.outputs
    assert types(decision.records) == ["step_started", "step_failed", "job_failed"]


@pytest.mark.parametrize(("step_limit", "fits"), [(100, True), (10, False)])
def test_a_step_overrides_the_workflow_output_limit(step_limit: int, fits: bool) -> None:
    wf = workflow(step("a", max_output_bytes=step_limit), max_output_bytes=20)
    run = Run.submitted(wf)
    run.apply(StepSucceeded(run.attempt_id, {"t": "x" * 10}), 1)  # 16 bytes
    assert (run.live.status is JobStatus.SUCCEEDED) is fits


def test_default_output_limit_is_256_kib() -> None:
    run = Run.submitted(workflow(step("a")))
    run.apply(StepSucceeded(run.attempt_id, {"t": "x" * 262_137}), 1)  # 262145 bytes
    assert run.live.error is not None
    assert "over the limit of 262144 bytes" in run.live.error.message


# --- map -------------------------------------------------------------------------------


def _mapped(**spec: Any) -> Workflow:
    """prepare -> each (a map over params.cases) -> report, with a cleanup step."""
    return workflow(
        step(
            "each",
            map={"over": "params.cases", "max_concurrency": 2, **spec},
            retry=NO_WAIT,
            heartbeat_s=30,
            max_crashes=2,
            on_failure="cleanup",
            next="report",
        ),
        step("report"),
        step("cleanup"),
        parameters=[LIST],
    )


def test_map_runs_each_item_at_most_max_concurrency_at_a_time_in_item_order() -> None:
    run = Run.submitted(_mapped())
    first = _all_tasks(run)
    assert [(t.item, t.item_index, t.attempt) for t in first] == [("a", 0, 1), ("b", 1, 1)]
    assert run.decisions[0].effects[0] == NotifyStatus(JOB_ID, JobStatus.QUEUED, "each", seq=1)
    item_b = live_ids(run.job)[1]
    run.apply(StepSucceeded(item_b, {"n": "b"}), 1)  # finishes before item 0
    assert _all_tasks(run)[-1].item_index == 2, "the freed slot runs the next item"
    assert len(run.live.live_attempts) == 2
    _succeed(run, 2, {"n": "a"})
    assert run.live.current_step == "each"
    decision = run.apply(StepSucceeded(live_ids(run.job)[0], {"n": "c"}), 3)
    assert run.live.outputs["each"] == {"items": [{"n": "a"}, {"n": "b"}, {"n": "c"}]}
    assert types(decision.records) == [
        "step_started",
        "map_item_succeeded",
        "step_succeeded",
        "step_dispatched",
    ]
    assert _all_tasks(run)[-1].step == "report"
    assert _all_tasks(run)[-1].inputs["each"]["items"][1] == {"n": "b"}


def test_each_item_has_its_own_retries() -> None:
    run = Run.submitted(_mapped())
    item_a, item_b = live_ids(run.job)
    run.apply(StepFailed(item_b, BOOM), 1)
    retry = _all_tasks(run)[-1]
    assert (retry.item, retry.item_index, retry.attempt) == ("b", 1, 2)
    run.apply(StepSucceeded(retry.attempt_id, {"n": "b"}), 2)
    run.apply(StepSucceeded(item_a, {"n": "a"}), 3)
    third = _all_tasks(run)[-1]
    assert (third.item_index, third.attempt) == (2, 1), "the retry used no attempt of item 2"
    run.apply(StepSucceeded(third.attempt_id, {"n": "c"}), 4)
    assert [(a.item_index, a.number, a.status) for a in run.live.attempts[:5]] == [
        (0, 1, AttemptStatus.SUCCEEDED),
        (1, 1, AttemptStatus.FAILED),
        (1, 2, AttemptStatus.SUCCEEDED),
        (2, 1, AttemptStatus.SUCCEEDED),
        (None, 1, AttemptStatus.DISPATCHED),
    ]


def test_a_tolerated_failed_item_leaves_null_and_its_error() -> None:
    run = Run.submitted(_mapped(tolerate_failures=1))
    item_a, item_b = live_ids(run.job)
    run.apply(StepFailed(item_a, FATAL, retryable=False), 1)
    run.apply(StepSucceeded(item_b, {"n": "b"}), 2)
    _succeed(run, 3, {"n": "c"})
    output = run.live.outputs["each"]
    assert output["items"] == [None, {"n": "b"}, {"n": "c"}]
    assert output["errors"] == {"0": FATAL.model_copy(update={"step": "each"}).model_dump()}
    assert _all_tasks(run)[-1].step == "report"


def test_too_many_failed_items_stop_the_others_and_fail_the_step() -> None:
    run = Run.submitted(_mapped())
    item_a, item_b = live_ids(run.job)
    run.apply(StepStarted(item_b, "w2"), 1)
    decision = run.apply(StepFailed(item_a, BOOM, retryable=False), 2)
    assert stops(decision) == [StopAttempt(JOB_ID, item_b, "step 'each' failed", worker_id="w2")]
    assert run.live.attempt(item_b).status is AttemptStatus.CANCELLED  # type: ignore[union-attr]
    cleanup = _all_tasks(run)[-1]
    assert cleanup.step == "cleanup"
    failure = cleanup.inputs["_failure"]
    assert failure["step"] == "each"
    assert failure["error"]["kind"] == "map_failed"
    assert failure["error"]["message"] == (
        "1 of 3 items of step 'each' failed, more than the 0 tolerated (item 0: Boom: it broke)"
    )
    assert types(decision.records) == [
        "step_started",
        "map_item_failed",
        "step_failed",
        "step_dispatched",
    ]


def test_an_empty_list_succeeds_at_once() -> None:
    run = Run.submitted(_mapped(), {"cases": []})
    assert run.live.outputs["each"] == {"items": []}
    assert [t.step for t in _all_tasks(run)] == ["report"]
    assert types(run.decisions[0].records) == ["job_submitted", "step_succeeded", "step_dispatched"]


def test_a_map_over_something_that_is_no_list_fails_with_map_error() -> None:
    wf = workflow(
        step("split", next="each"),
        step("each", map={"over": "outputs.split.parts"}),
    )
    run = Run.submitted(wf)
    _succeed(run, 1, {"parts": "a,b"})
    assert run.live.status is JobStatus.FAILED
    assert run.live.error == ErrorInfo(
        kind="map_error",
        message="step 'each' maps over outputs.split.parts, which must be a list, "
        "but it is a string",
        step="each",
    )


def test_map_item_progress_is_announced_for_the_whole_step() -> None:
    run = Run.submitted(_mapped())
    item_a, item_b = live_ids(run.job)
    run.apply(StepSucceeded(item_a, {"n": "a"}), 1)
    decision = run.apply(StepProgressed(item_b, 0.5, "meshing"), 2)
    # seq 3: after "queued" (submission) and "running" (item 0's result)
    assert decision.effects == (NotifyProgress(JOB_ID, "each", 0.5, "item 1: meshing", seq=3),)
    assert decision.records[-1].data["item_index"] == 1


def test_a_lost_item_is_redispatched_alone_and_counted_per_item() -> None:
    run = Run.submitted(_mapped())
    item_a, item_b = live_ids(run.job)
    run.apply(StepStarted(item_a, "w1"), 1)
    run.apply(StepStarted(item_b, "w2"), 10)
    decision = run.apply(TimerFired(), 31)
    run.apply(StepHeartbeat(item_b), 45)
    assert types(decision.effects) == ["StopAttempt", "DispatchStep"]
    assert _all_tasks(run)[-1].item_index == 0
    assert run.live.crashes == {"each[0]": 1}
    run.apply(StepStarted(live_ids(run.job)[1], "w3"), 32)
    final = run.apply(TimerFired(), 62)
    assert run.live.status is JobStatus.FAILED, "the second crash of item 0 quarantines the job"
    assert run.live.error == ErrorInfo(
        kind="worker_lost",
        message="worker lost 2 times on item 0: heartbeat timeout after 30s",
        step="each",
    )
    assert types(final.effects) == ["StopAttempt", "StopAttempt", "NotifyResult"]
    assert run.live.live_attempts == ()


def test_rerun_of_a_failed_map_runs_every_item_again() -> None:
    wf = workflow(
        step("each", map={"over": "params.cases", "max_concurrency": 3}), parameters=[LIST]
    )
    run = Run.submitted(wf)
    ids = live_ids(run.job)
    run.apply(StepSucceeded(ids[0], {}), 1)
    run.apply(StepFailed(ids[1], BOOM), 2)
    assert run.live.status is JobStatus.FAILED
    decision = run.apply(RerunRequested(), 3)
    assert [(t.item_index, t.attempt) for t in tasks(decision)] == [(0, 1), (1, 1), (2, 1)]
    assert all(attempt.run == 2 for attempt in run.live.live_attempts)


# --- parallel --------------------------------------------------------------------------


def _parallel(tolerate: int = 0) -> Workflow:
    """prepare -> fan (costs | emissions) -> report, with a cleanup step."""
    return workflow(
        step("prepare", next="fan"),
        {
            "name": "fan",
            "parallel": {"branches": ["costs", "emissions"], "tolerate_failures": tolerate},
            "next": "report",
            "on_failure": "cleanup",
        },
        step("costs", retry=NO_WAIT),
        step("emissions", input={"grid": "outputs.prepare.grid"}, heartbeat_s=20),
        step("report"),
        step("cleanup"),
    )


def test_branches_run_together_and_join_before_the_next_step() -> None:
    run = Run.submitted(_parallel())
    decision = run.apply(StepSucceeded(run.attempt_id, {"grid": 7}), 1)
    assert [(t.step, t.queue, t.inputs) for t in tasks(decision)] == [
        ("costs", "q-costs", {"prepare": {"grid": 7}}),
        ("emissions", "q-emissions", {"grid": 7}),
    ]
    assert decision.effects[0] == NotifyStatus(JOB_ID, JobStatus.RUNNING, "fan", seq=2)
    costs, emissions = live_ids(run.job)
    waiting = run.apply(StepSucceeded(emissions, {"t": 3}), 2)
    assert tasks(waiting) == []
    assert types(waiting.records) == ["step_started", "branch_succeeded"]
    assert "emissions" not in run.live.outputs, "stored at the join"
    joined = run.apply(StepSucceeded(costs, {"eur": 5}), 3)
    assert run.live.outputs["fan"] == {"costs": {"eur": 5}, "emissions": {"t": 3}}
    assert run.live.outputs["costs"] == {"eur": 5}
    assert run.live.outputs["emissions"] == {"t": 3}
    assert [t.step for t in tasks(joined)] == ["report"]
    assert types(joined.records) == [
        "step_started",
        "branch_succeeded",
        "step_succeeded",
        "step_dispatched",
    ]


def test_a_branch_is_retried_on_its_own() -> None:
    run = Run.submitted(_parallel())
    run.apply(StepSucceeded(run.attempt_id, {"grid": 7}), 1)
    costs, emissions = live_ids(run.job)
    run.apply(StepFailed(costs, BOOM), 2)
    retry = _all_tasks(run)[-1]
    assert (retry.step, retry.attempt) == ("costs", 2)
    run.apply(StepSucceeded(retry.attempt_id, {"eur": 5}), 3)
    run.apply(StepSucceeded(emissions, {"t": 3}), 4)
    assert _all_tasks(run)[-1].step == "report"


def test_a_tolerated_failed_branch_gives_null_and_its_error() -> None:
    run = Run.submitted(_parallel(tolerate=1))
    run.apply(StepSucceeded(run.attempt_id, {"grid": 7}), 1)
    costs, emissions = live_ids(run.job)
    run.apply(StepFailed(emissions, FATAL), 2)
    run.apply(StepSucceeded(costs, {"eur": 5}), 3)
    output = run.live.outputs["fan"]
    assert output["costs"] == {"eur": 5}
    assert output["emissions"] is None
    assert output["_errors"]["emissions"]["kind"] == "Fatal"
    assert _all_tasks(run)[-1].step == "report"


def test_too_many_failed_branches_stop_the_others_and_fail_the_step() -> None:
    run = Run.submitted(_parallel())
    run.apply(StepSucceeded(run.attempt_id, {"grid": 7}), 1)
    costs, emissions = live_ids(run.job)
    run.apply(StepStarted(costs, "w1"), 2)
    decision = run.apply(StepFailed(emissions, FATAL, retryable=False), 3)
    assert stops(decision) == [StopAttempt(JOB_ID, costs, "step 'fan' failed", worker_id="w1")]
    cleanup = tasks(decision)[-1]
    assert cleanup.step == "cleanup"
    assert cleanup.inputs["_failure"]["step"] == "fan"
    assert cleanup.inputs["_failure"]["error"]["kind"] == "parallel_failed"
    assert "('emissions': Fatal: never again)" in cleanup.inputs["_failure"]["error"]["message"]
    late = run.apply(StepSucceeded(costs, {"eur": 5}), 4)
    assert late.ignored == "stale attempt (already cancelled)"


def test_cancel_stops_every_live_attempt() -> None:
    run = Run.submitted(_parallel())
    run.apply(StepSucceeded(run.attempt_id, {"grid": 7}), 1)
    costs, emissions = live_ids(run.job)
    run.apply(StepFailed(costs, BOOM), 2)  # its retry is dispatched at once
    decision = run.apply(CancelRequested("stop"), 3)
    assert len(stops(decision)) == 2
    assert {s.attempt_id for s in stops(decision)} == set(live_ids(run.decisions[-2].job))
    assert emissions in {s.attempt_id for s in stops(decision)}
    assert isinstance(decision.effects[-1], NotifyResult)
    assert run.live.live_attempts == ()
    assert run.live.error == ErrorInfo(kind="cancelled", message="stop", step="fan")


def test_timers_watch_every_live_attempt() -> None:
    run = Run.submitted(_parallel().model_copy(update={"timeout_s": 500}))
    run.apply(StepSucceeded(run.attempt_id, {"grid": 7}), 1)
    costs, emissions = live_ids(run.job)
    run.apply(StepStarted(emissions, "w2"), 5)
    assert next_wakeup(run.live) == at(25), "the emissions branch's heartbeat"
    run.apply(StepHeartbeat(emissions), 20)
    assert next_wakeup(run.live) == at(40)
    decision = run.apply(TimerFired(), 40)
    assert types(decision.records) == ["step_lost", "step_dispatched"]
    assert run.live.crashes == {"emissions": 1}
    assert run.live.attempt(costs).status is AttemptStatus.DISPATCHED  # type: ignore[union-attr]


def test_one_timer_handles_every_deadline_due() -> None:
    run = Run.submitted(_mapped())
    item_a, item_b = live_ids(run.job)
    run.apply(StepStarted(item_a, "w1"), 1)
    run.apply(StepStarted(item_b, "w2"), 1)
    decision = run.apply(TimerFired(), 31)
    assert types(decision.records) == ["step_lost", "step_dispatched"] * 2
    wakeup = next_wakeup(run.live)
    assert wakeup is None or wakeup > at(31)


def test_job_timeout_stops_every_live_attempt() -> None:
    run = Run.submitted(_mapped().model_copy(update={"timeout_s": 50}))
    decision = run.apply(TimerFired(), 50)
    assert types(decision.effects) == ["StopAttempt", "StopAttempt", "NotifyResult"]
    assert {a.status for a in run.live.attempts} == {AttemptStatus.TIMED_OUT}
    assert run.live.status is JobStatus.TIMED_OUT


# --- repeat ----------------------------------------------------------------------------

CONVERGED = {"var": "outputs.refine.done", "op": "==", "value": True}


def _repeating(max_iterations: int = 3, **fields: Any) -> Workflow:
    return workflow(
        step(
            "refine",
            repeat={"until": CONVERGED, "max_iterations": max_iterations},
            retry=NO_WAIT,
            next="report",
            **fields,
        ),
        step("report"),
        step("cleanup"),
    )


def test_a_step_repeats_until_its_condition_holds() -> None:
    run = Run.submitted(_repeating())
    _succeed(run, 1, {"done": False, "round": 1})
    second = _all_tasks(run)[-1]
    assert (second.step, second.iteration, second.attempt) == ("refine", 2, 1)
    assert second.inputs == {"refine": {"done": False, "round": 1}}, "the previous output"
    assert types(run.decisions[-1].records)[-3:] == [
        "step_succeeded",
        "step_repeated",
        "step_dispatched",
    ]
    run.apply(StepFailed(second.attempt_id, BOOM), 2)
    retry = _all_tasks(run)[-1]
    assert (retry.iteration, retry.attempt) == (2, 2), "each iteration has its own retries"
    _succeed(run, 3, {"done": True, "round": 2})
    assert _all_tasks(run)[-1].step == "report"
    assert run.live.outputs["refine"] == {"done": True, "round": 2}
    succeeded = [r for d in run.decisions for r in d.records if r.type == "step_succeeded"]
    assert [(r.data["iteration"], r.data["until_met"], r.data["next"]) for r in succeeded] == [
        (1, False, "refine"),
        (2, True, "report"),
    ]


def test_a_loop_that_never_converges_fails_with_loop_exhausted() -> None:
    run = Run.submitted(_repeating(max_iterations=2, on_failure="cleanup"))
    _succeed(run, 1, {"done": False})
    _succeed(run, 2, {"done": False})
    task = _all_tasks(run)[-1]
    assert task.step == "cleanup"
    assert task.inputs["_failure"]["error"] == {
        "kind": "loop_exhausted",
        "message": "step 'refine' ran 2 times without reaching its 'until' "
        "(outputs.refine.done == true)",
        "step": "refine",
        "details": None,
    }
    assert task.inputs["refine"] == {"done": False}, "the last output is kept"


def test_a_repeated_map_runs_all_items_again_each_iteration() -> None:
    until = {"exists": "outputs.each.items"}
    wf = workflow(
        step("each", map={"over": "params.cases", "max_concurrency": 5}, repeat={
            "until": {"not": until}, "max_iterations": 2}),
        parameters=[LIST],
    )  # fmt: skip
    run = Run.submitted(wf)
    for seconds in (1, 2, 3, 4, 5, 6):
        _succeed(run, seconds)
    assert [(t.iteration, t.item_index) for t in _all_tasks(run)] == [
        (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2),
    ]  # fmt: skip
    assert run.live.status is JobStatus.FAILED
    assert run.live.error is not None
    assert run.live.error.kind == "loop_exhausted"


@pytest.mark.parametrize(
    ("var", "why"),
    [
        ("params.colour", "the job has no parameter 'colour'"),
        ("outputs.later", "step 'later' has no output"),
        ("outputs.prepare.mesh.cells.n", "outputs.prepare.mesh.cells is a number, not an object"),
        ("outputs._failure", "there is no failure: outputs._failure is set only for an "
         "on_failure step"),
    ],
)  # fmt: skip
def test_a_missing_input_says_where_the_lookup_stops(var: str, why: str) -> None:
    wf = workflow(step("prepare", next="solve"), step("solve", input={"x": var}))
    run = Run.submitted(wf)
    _succeed(run, 1, {"mesh": {"cells": 12}})
    assert run.live.error is not None
    assert run.live.error.message == f"input 'x' of step 'solve' reads {var}, but {why}"
