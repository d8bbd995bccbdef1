"""The workflow language end to end: map, parallel branches, a bounded loop, inputs and
``on_failure``, through the real client SDK, orchestrator and SDK demo workers
(workflow ``scenario_study`` of ``config/workflow_config.json``)."""

from __future__ import annotations

from typing import Any

from segue.client import SegueClient
from segue.protocol.messages import AttemptStatus, AttemptView, JobStatus, JobView
from segue.settings import Settings
from segue.worker import Worker

FAST: dict[str, Any] = {"step_seconds": 0.1}
RESULT_TIMEOUT_S = 90


async def _run(client: SegueClient, params: dict[str, Any]) -> JobView:
    """Submit a ``scenario_study`` job, wait for its result and return its stored view."""
    job = await client.submit("scenario_study", {**FAST, **params})
    await job.result(timeout=RESULT_TIMEOUT_S)
    view = await client.get(job.job_id)
    assert view is not None
    return view


def _attempts(view: JobView, step: str) -> list[AttemptView]:
    return [attempt for attempt in view.attempts if attempt.step == step]


async def test_scenario_study_runs_map_parallel_and_loop_with_outputs_in_order(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    scenarios = ["high", "low", "mid", "extra"]
    view = await _run(client, {"scenarios": scenarios})
    assert view.status is JobStatus.SUCCEEDED, view.error

    items = view.outputs["simulate_scenarios"]["items"]
    assert [item["scenario"] for item in items] == scenarios, "outputs in item order"
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    mapped = _attempts(view, "simulate_scenarios")
    assert sorted(a.item_index for a in mapped if a.item_index is not None) == [0, 1, 2, 3]
    assert all(a.status is AttemptStatus.SUCCEEDED for a in mapped)

    costs = view.outputs["costs"]
    assert set(costs["by_scenario"]) == set(scenarios), "the branch got the map's items"
    assert costs["cheapest"] == "low"
    assert view.outputs["assess"] == {"costs": costs, "emissions": view.outputs["emissions"]}

    compared = _attempts(view, "compare")
    assert [(a.iteration, a.number) for a in compared] == [(1, 1), (2, 1)]
    assert view.outputs["compare"]["converged"] is True
    history = [entry.type for entry in view.history]
    assert history.count("step_repeated") == 1
    assert history.count("branch_succeeded") == 2
    assert history.count("map_item_succeeded") == 4

    report = view.outputs["report"]
    assert report["scenarios"] == scenarios
    assert report["best_scenario"] == "low"
    assert report["comparisons"] == 2
    assert report["reviewed"] is False
    assert [step for step in _step_order(view) if step != "simulate_scenarios"] == [
        "optimise",
        "costs",
        "emissions",
        "compare",
        "report",
    ]


def _step_order(view: JobView) -> list[str]:
    """The steps in the order they first started (branches side by side, sorted)."""
    seen: list[str] = []
    for attempt in sorted(view.attempts, key=lambda a: (a.dispatched_at or a.finished_at, a.step)):
        if attempt.step not in seen:
            seen.append(attempt.step)
    return seen


async def test_a_map_item_that_fails_once_is_retried_and_the_job_succeeds(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    view = await _run(client, {"fail_item": "mid"})
    assert view.status is JobStatus.SUCCEEDED, view.error

    mid = [a for a in _attempts(view, "simulate_scenarios") if a.item_index == 1]
    assert [(a.number, a.status) for a in mid] == [
        (1, AttemptStatus.FAILED),
        (2, AttemptStatus.SUCCEEDED),
    ]
    assert mid[0].error is not None
    assert mid[0].error.kind == "DemoFailure"
    others = [a for a in _attempts(view, "simulate_scenarios") if a.item_index != 1]
    assert [a.number for a in others] == [1, 1], "the other items needed no retry"
    items = view.outputs["simulate_scenarios"]["items"]
    assert [item["scenario"] for item in items] == ["low", "mid", "high"]
    assert "errors" not in view.outputs["simulate_scenarios"]


async def test_a_failed_branch_takes_the_on_failure_path_which_sees_the_failure(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    job = await client.submit("scenario_study", {**FAST, "fail_at": "emissions"})
    result = await job.result(timeout=RESULT_TIMEOUT_S)
    assert result.status is JobStatus.SUCCEEDED, "on_failure works like except"
    assert result.output is not None
    assert result.output["cleaned_up"] is True
    assert result.output["failed_step"] == "assess"
    assert result.output["error_kind"] == "parallel_failed"
    assert "'emissions': DemoFailure" in result.output["error_message"]

    view = await client.get(job.job_id)
    assert view is not None
    assert view.current_step == "cleanup"
    assert view.outputs["_failure"]["step"] == "assess"
    assert "compare" not in {a.step for a in view.attempts}
    assert "step_failed" in [entry.type for entry in view.history]


async def test_an_empty_scenario_list_skips_the_map(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    view = await _run(client, {"scenarios": []})
    assert view.status is JobStatus.SUCCEEDED, view.error
    assert view.outputs["simulate_scenarios"] == {"items": []}
    assert _attempts(view, "simulate_scenarios") == []
    assert view.outputs["report"]["scenarios"] == []
