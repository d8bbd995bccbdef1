"""Workflows drawn for people: the Mermaid flowchart and the text outline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segue.workflows.diagram import Edge, edges, to_mermaid, to_outline
from segue.workflows.loader import load_workflows
from segue.workflows.model import Workflow

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "workflow_config.json"

DEMO_MERMAID = """\
flowchart TD
    start(["start"])
    s0["prepare<br/>(prepare)"]
    s1["optimise<br/>(optimise)"]
    s2["simulate<br/>(simulate)"]
    s3["report<br/>(report)"]
    done(["end"])
    start --> s0
    s0 --> s1
    s1 -->|"params.simulate == true"| s2
    s1 -->|"default"| s3
    s2 --> s3
    s3 --> done
"""


def demo(name: str = "energy_plan") -> Workflow:
    """A workflow of the shipped file."""
    loaded = load_workflows(SHIPPED).get(name)
    assert loaded is not None
    return loaded.workflow


def workflow(*steps: dict[str, Any], **fields: Any) -> Workflow:
    """A workflow with these steps (not linted: the diagram must not need it)."""
    return Workflow.model_validate({"name": "w", "steps": list(steps)} | fields)


def test_demo_mermaid() -> None:
    assert to_mermaid(demo()) == DEMO_MERMAID


def test_one_step_workflow_goes_from_start_to_end() -> None:
    assert to_mermaid(demo("quick_check")).splitlines()[-2:] == [
        "    start --> s0",
        "    s0 --> done",
    ]


def test_branches_to_the_end_failures_and_escaping() -> None:
    flow = workflow(
        {
            "name": "check",
            "queue": "checks.v2",
            "on_failure": "cleanup",
            "next": {
                "branches": [
                    {"when": {"var": "params.region", "op": "==", "value": "nl"}, "goto": None},
                    {"when": {"var": "params.years", "op": ">=", "value": 10}, "goto": "cleanup"},
                ],
            },
        },
        {"name": "cleanup", "queue": "cleanup"},
    )
    assert to_mermaid(flow).splitlines()[2:] == [
        '    s0["check<br/>(checks.v2)"]',
        '    s1["cleanup<br/>(cleanup)"]',
        '    done(["end"])',
        "    start --> s0",
        '    s0 -->|"params.region == #quot;nl#quot;"| done',
        '    s0 -->|"params.years #gt;= 10"| s1',
        '    s0 -->|"default"| done',
        '    s0 -.->|"on failure"| s1',
        "    s1 --> done",
    ]


def test_a_step_that_does_not_exist_is_drawn_as_unknown() -> None:
    flow = workflow({"name": "a", "queue": "a", "next": "b"})
    lines = to_mermaid(flow).splitlines()
    assert '    u1["b<br/>(unknown step)"]' in lines
    assert "    s0 --> u1" in lines


def test_edges_of_a_step() -> None:
    step = workflow(
        {
            "name": "a",
            "queue": "a",
            "next": {
                "branches": [{"when": {"exists": "params.x"}, "goto": "b"}],
                "default": "c",
            },
            "on_failure": "d",
        }
    ).first_step
    assert edges(step) == [
        Edge("b", "params.x exists"),
        Edge("c", "default"),
        Edge("d", "on failure", on_failure=True),
    ]


def test_outline_lists_parameters_then_steps() -> None:
    text = to_outline(demo())
    assert text.startswith("energy_plan (version 1)\nPlan an energy system")
    assert "job timeout: 3600 s" in text
    lines = text.splitlines()
    for line in [
        '  region: string, default "nl", one of "nl" (Netherlands), "de" (Germany), "be" (Belgium)',
        "      Region: The country whose energy system is planned.",
        "  horizon_years: integer, default 10, minimum 1, maximum 50",
        "  scenario_start: datetime, default 2030-01-01T00:00:00+00:00, "
        "minimum 2025-01-01T00:00:00+00:00",
        "  resolution: duration, default PT1H, minimum PT15M, maximum P1D",
        "  simulation_window: duration, default P7D, minimum PT1H, maximum P366D, "
        "must be greater than or equal to resolution",
        "  2. optimise (queue optimise)",
        "     timeout 3600 s, heartbeat 30 s, no retries, max crashes 3",
        "     next: simulate if params.simulate == true; otherwise report",
        "     next: end",
    ]:
        assert line in lines, line
    assert lines.index("parameters:") < lines.index("steps:")


def test_outline_of_retries_failures_and_bare_parameters() -> None:
    flow = workflow(
        {
            "name": "a",
            "queue": "qa",
            "dispatch_timeout_s": 0.5,
            "heartbeat_s": None,
            "retry": {"max_attempts": 3, "non_retryable": ["ValueError"]},
            "on_failure": "b",
            "next": "b",
        },
        {"name": "b", "queue": "qb"},
        parameters=[
            {"name": "token", "type": "string", "required": True, "min_length": 8},
            {"name": "wait", "type": "duration", "default": 90},
        ],
    )
    lines = to_outline(flow).splitlines()
    assert "job timeout: none" in lines
    assert "  token: string, required, at least 8 characters" in lines
    assert "  wait: duration, default 90 s" in lines
    assert (
        "     timeout none, heartbeat none, dispatch timeout 0.5 s, up to 3 attempts "
        "(first delay 1 s, x2, at most 300 s, jitter 10%), not retried on ValueError, "
        "max crashes 3"
    ) in lines
    assert "     on failure: b" in lines


def test_outline_without_parameters() -> None:
    lines = to_outline(workflow({"name": "a", "queue": "a"})).splitlines()
    assert lines[lines.index("parameters:") + 1] == "  (none)"


STUDY_MERMAID_EDGES = """\
    start --> s0
    s0 --> s1
    s1 --> s2
    s1 -.->|"on failure"| s8
    s2 --> s3
    s2 --> s4
    j2 --> s5
    j2 -.->|"on failure"| s8
    s3 --> j2
    s4 --> j2
    s5 -->|"repeat until outputs.compare.converged == true, at most 3 times"| s5
    s5 -->|"outputs.compare.best_cost_eur #gt; 100000000000"| s6
    s5 -->|"default"| s7
    s5 -.->|"on failure"| s8
    s6 --> s7
    s7 --> done
    s8 --> done
"""


def test_study_mermaid_draws_map_parallel_join_and_repeat() -> None:
    text = to_mermaid(demo("scenario_study"))
    lines = text.splitlines()
    assert (
        '    s1[["simulate_scenarios<br/>(simulate)<br/>'
        'for each of outputs.optimise.scenarios, 3 at a time"]]'
    ) in lines
    assert '    s2{{"assess<br/>(parallel)"}}' in lines
    assert '    j2(("join assess"))' in lines
    assert text.endswith(STUDY_MERMAID_EDGES)


def test_tolerated_failures_are_shown() -> None:
    flow = workflow(
        {
            "name": "m",
            "queue": "q",
            "map": {"over": "params.x", "tolerate_failures": 2},
            "next": "p",
        },
        {"name": "p", "parallel": {"branches": ["b"], "tolerate_failures": 1}},
        {"name": "b", "queue": "q"},
    )
    lines = to_mermaid(flow).splitlines()
    assert (
        '    s0[["m<br/>(q)<br/>for each of params.x, 1 at a time, tolerates 2 failures"]]' in lines
    )
    assert '    s1{{"p<br/>(parallel, tolerates 1 failure)"}}' in lines
    assert "    j1 --> done" in lines
    assert "    s2 --> j1" in lines


def test_study_outline_says_what_each_construct_does() -> None:
    lines = to_outline(demo("scenario_study")).splitlines()
    for line in [
        "largest step output: 262144 bytes",
        '  scenarios: list, default ["low", "mid", "high"], items string, at most 20 items',
        "  2. simulate_scenarios (queue simulate)",
        "     map: for each item of outputs.optimise.scenarios, at most 3 at a time",
        "     input: plan = outputs.optimise",
        "  3. assess (parallel: costs, emissions; joins when all are done)",
        "     next: the join of assess",
        "     repeat: until outputs.compare.converged == true, at most 3 times",
        "     next: review if outputs.compare.best_cost_eur > 100000000000; otherwise report",
        "     on failure: cleanup",
    ]:
        assert line in lines, line
    assessed = lines.index("  3. assess (parallel: costs, emissions; joins when all are done)")
    assert lines[assessed + 1 : assessed + 4] == [
        "     Assess costs and emissions of the scenarios at the same time.",
        "     next: compare",
        "     on failure: cleanup",
    ], "a parallel step has no task settings"


def test_outline_of_a_step_output_limit_and_list_bounds() -> None:
    flow = workflow(
        {"name": "a", "queue": "q", "max_output_bytes": 1000, "input": {}},
        parameters=[
            {"name": "xs", "type": "list", "items": {"type": "integer"}, "min_items": 1},
        ],
    )
    lines = to_outline(flow).splitlines()
    assert "  xs: list, items integer, at least 1 item" in lines
    assert "     input: nothing" in lines
    assert lines[-2].endswith("max crashes 3, largest output 1000 bytes")
