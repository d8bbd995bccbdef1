"""Loading workflow files: errors name the file, the place in it and the reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from segue.errors import ConfigurationError
from segue.workflows.lint import Problem
from segue.workflows.loader import (
    Catalog,
    LoadedWorkflow,
    WorkflowConfigError,
    content_hash,
    load_workflows,
    parse_workflows,
)
from segue.workflows.model import DEFAULT_DISPATCH_TIMEOUT_S, Workflow
from segue.workflows.parameters import resolve_params

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "workflow_config.json"

VALID: dict[str, Any] = {
    "format_version": 1,
    "workflows": [
        {
            "name": "plan",
            "parameters": [{"name": "years", "type": "integer", "default": 5}],
            "steps": [
                {"name": "prepare", "queue": "prepare", "next": "optimise"},
                {"name": "optimise", "queue": "optimise"},
            ],
        },
        {"name": "check", "steps": [{"name": "check", "queue": "prepare"}]},
    ],
}


def problems_of(data: Any) -> list[Problem]:
    """The problems parse_workflows reports for ``data``."""
    with pytest.raises(WorkflowConfigError) as caught:
        parse_workflows(data)
    return caught.value.problems


def with_step(**fields: Any) -> dict[str, Any]:
    """VALID with fields of its second step replaced."""
    data = copy.deepcopy(VALID)
    data["workflows"][0]["steps"][1].update(fields)
    return data


# --- the shipped file ------------------------------------------------------------------


def test_shipped_config_loads_with_the_demo_workflows() -> None:
    catalog = load_workflows(SHIPPED)
    assert catalog.names == ["energy_plan", "quick_check", "scenario_study"]
    assert catalog.queues() == {"prepare", "optimise", "simulate", "report", "quick_check"}
    plan = catalog.get("energy_plan")
    assert plan is not None
    assert [step.name for step in plan.workflow.steps] == [
        "prepare",
        "optimise",
        "simulate",
        "report",
    ]
    assert plan.workflow.timeout_s is not None


def test_shipped_energy_plan_defaults() -> None:
    plan = load_workflows(SHIPPED).get("energy_plan")
    assert plan is not None
    assert resolve_params(plan.workflow, {}) == {
        "region": "nl",
        "horizon_years": 10,
        "simulate": True,
        "co2_price_eur": 80.0,
        "step_seconds": 1.0,
        "fail_at": "none",
        "scenario_start": "2030-01-01T00:00:00+00:00",
        "resolution": "PT1H",
        "simulation_window": "P7D",
    }
    schema = plan.parameters_schema
    assert schema["properties"]["fail_at"]["enum"] == [
        "none",
        "prepare",
        "optimise",
        "simulate",
        "report",
    ]


def test_shipped_quick_check_defaults() -> None:
    check = load_workflows(SHIPPED).get("quick_check")
    assert check is not None
    assert [step.queue for step in check.workflow.steps] == ["quick_check"]
    assert resolve_params(check.workflow, {}) == {
        "value": 1,
        "step_seconds": 0.1,
        "fail_at": "none",
    }


# --- the catalog -----------------------------------------------------------------------


def test_catalog_lookup_iteration_and_queues() -> None:
    catalog = parse_workflows(VALID)
    assert len(catalog) == 2
    assert [loaded.workflow.name for loaded in catalog] == ["plan", "check"]
    assert "plan" in catalog
    assert catalog.get("nope") is None
    assert catalog.queues() == {"prepare", "optimise"}


def test_content_hash_is_stable_and_changes_with_the_definition() -> None:
    first = parse_workflows(VALID).get("plan")
    again = parse_workflows(copy.deepcopy(VALID)).get("plan")
    changed = parse_workflows(with_step(timeout_s=10)).get("plan")
    assert first is not None
    assert again is not None
    assert changed is not None
    assert first.content_hash == again.content_hash == content_hash(first.workflow)
    assert len(first.content_hash) == 64
    assert changed.content_hash != first.content_hash


def test_catalog_refuses_the_same_name_twice() -> None:
    loaded = next(iter(parse_workflows(VALID)))
    with pytest.raises(ConfigurationError, match="'plan' is in the catalog twice"):
        Catalog([loaded, LoadedWorkflow.of(loaded.workflow)])


# --- reading the file ------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflows(path)
    assert caught.value.problems == [Problem("$", "file not found")]
    assert str(path) in str(caught.value)


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "format_version": 1,\n  "workflows": [}\n')
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflows(path)
    assert caught.value.problems == [
        Problem("$", "invalid JSON at line 3, column 17: Expecting value")
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"format_version": 1, "format_version": 1}', "key 'format_version' appears twice"),
        ('{"x": NaN}', "NaN is not a JSON number"),
    ],
)
def test_json_that_python_would_accept_silently(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "odd.json"
    path.write_text(text)
    with pytest.raises(WorkflowConfigError, match=reason):
        load_workflows(path)


def test_error_message_names_the_file_and_lists_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "workflows.json"
    data = with_step(timeout_s=0, queue="bad queue!")
    path.write_text(json.dumps(data))
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflows(path)
    assert isinstance(caught.value, ConfigurationError)
    assert str(caught.value).splitlines() == [
        f"invalid workflow file {path} (2 problem(s)):",
        "  $.workflows[0].steps[1].queue: must be a queue name: "
        "1 to 100 letters, digits, '_', '.' or '-' (got \"bad queue!\")",
        "  $.workflows[0].steps[1].timeout_s: Input should be greater than 0 (got 0)",
    ]


def test_lint_problems_stop_loading() -> None:
    data = with_step(next="nowhere")
    assert problems_of(data) == [
        Problem("$.workflows[0].steps[1].next", "unknown step 'nowhere' (steps: prepare, optimise)")
    ]


# --- model errors as JSON paths --------------------------------------------------------


def branch(when: Any) -> dict[str, Any]:
    """VALID whose second step ends with a switch on ``when``."""
    return with_step(next={"branches": [{"when": when, "goto": None}]})


BRANCH = "$.workflows[0].steps[1].next.branches[0]"
PARAM = "$.workflows[0].parameters[0]"
STEP = {"name": "a", "queue": "a"}


def with_param(**fields: Any) -> dict[str, Any]:
    """VALID with fields of its parameter replaced."""
    data = copy.deepcopy(VALID)
    data["workflows"][0]["parameters"][0].update(fields)
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            with_step(timeout_s=-1),
            [
                Problem(
                    "$.workflows[0].steps[1].timeout_s", "Input should be greater than 0 (got -1)"
                )
            ],
        ),
        (
            with_step(timeout_s="5"),
            [
                Problem(
                    "$.workflows[0].steps[1].timeout_s", 'Input should be a valid number (got "5")'
                )
            ],
        ),
        (
            with_step(timout_s=5),
            [Problem("$.workflows[0].steps[1].timout_s", "unknown key (not allowed here)")],
        ),
        (
            with_step(retry={"max_attempts": 0}),
            [
                Problem(
                    "$.workflows[0].steps[1].retry.max_attempts",
                    "Input should be greater than or equal to 1 (got 0)",
                )
            ],
        ),
        (
            {"format_version": 2, "workflows": VALID["workflows"]},
            [Problem("$.format_version", "Input should be 1 (got 2)")],
        ),
        ({"format_version": 1}, [Problem("$.workflows", "required key is missing")]),
        (
            with_step(next=3),
            [
                Problem(
                    "$.workflows[0].steps[1].next",
                    "next is a step name, a switch object or null (got 3)",
                )
            ],
        ),
        (
            with_param(default="5"),
            [Problem(f"{PARAM}.default", 'Input should be a valid integer (got "5")')],
        ),
        (
            with_param(default=True),
            [Problem(f"{PARAM}.default", "Input should be a valid integer (got true)")],
        ),
        (
            with_param(type="int"),
            [
                Problem(
                    f"{PARAM}.type",
                    "must be one of 'string', 'boolean', 'integer', 'float', 'datetime', "
                    """'duration', 'list' (got "int")""",
                )
            ],
        ),
        (
            {"workflows": [{"name": "w", "parameters": [{"name": "x"}], "steps": [STEP]}]},
            [Problem(f"{PARAM}.type", "required key is missing")],
        ),
        (
            with_param(type="datetime", default="2030-01-01 00:00"),
            [
                Problem(
                    f"{PARAM}.default",
                    "must be a date-time with a timezone offset (ISO 8601, e.g. "
                    '2030-01-01T00:00:00+00:00) (got "2030-01-01 00:00")',
                )
            ],
        ),
        (
            with_param(type="datetime", default="2030-01-01T00:00:00"),
            [
                Problem(
                    f"{PARAM}.default",
                    "must be a date-time with a timezone offset (ISO 8601, e.g. "
                    '2030-01-01T00:00:00+00:00) (got "2030-01-01T00:00:00")',
                )
            ],
        ),
        (
            with_param(type="datetime", default="2030-02-30T00:00:00Z", maximum=5),
            [
                Problem(
                    f"{PARAM}.default",
                    "must be a date-time with a timezone offset (ISO 8601, e.g. "
                    "2030-01-01T00:00:00+00:00); day is out of range for month "
                    '(got "2030-02-30T00:00:00Z")',
                ),
                Problem(
                    f"{PARAM}.maximum",
                    "must be a date-time with a timezone offset (ISO 8601, e.g. "
                    "2030-01-01T00:00:00+00:00) (got 5)",
                ),
            ],
        ),
        (
            with_param(type="duration", default="P1M", minimum=True),
            [
                Problem(
                    f"{PARAM}.default",
                    "must be a duration (ISO 8601 like PT1H30M or P7D, or a number of seconds); "
                    "years and months have no fixed length: give weeks, days, hours, minutes "
                    'or seconds (got "P1M")',
                ),
                Problem(
                    f"{PARAM}.minimum",
                    "must be a duration (ISO 8601 like PT1H30M or P7D, or a number of seconds) "
                    "(got true)",
                ),
            ],
        ),
        (
            with_param(type="duration", default=-60),
            [
                Problem(
                    f"{PARAM}.default",
                    "must be a duration (ISO 8601 like PT1H30M or P7D, or a number of seconds); "
                    "it is negative (got -60)",
                )
            ],
        ),
        (
            with_param(constraints=[{"other": "x", "relation": "bigger"}]),
            [
                Problem(
                    f"{PARAM}.constraints[0].relation",
                    "Input should be 'greater', 'greater_or_eq', 'smaller', 'smaller_or_eq' "
                    "or 'eq' (got \"bigger\")",
                )
            ],
        ),
        (with_param(integer=1), [Problem(f"{PARAM}.integer", "unknown key (not allowed here)")]),
        (
            branch({"var": "params.years", "op": "in", "value": 3}),
            [Problem(f"{BRANCH}.when.value", "the value of 'in' must be a list (got 3)")],
        ),
        (
            branch({"var": "params.years", "op": ">", "value": True}),
            [
                Problem(
                    f"{BRANCH}.when.value",
                    "the value of '>' must be a number or a string (got true)",
                )
            ],
        ),
        (
            branch({"all": [{"exists": "outputs.prepare"}]}),
            [
                Problem(
                    f"{BRANCH}.when.all[0].exists",
                    "must be a variable: params.<name> or outputs.<step>.<key>[.<key>...] "
                    '(got "outputs.prepare")',
                )
            ],
        ),
        (
            branch({"not": {"when": 1}}),
            [
                Problem(
                    f"{BRANCH}.when.not",
                    "a condition is an object with one of the keys "
                    "'var', 'all', 'any', 'not' or 'exists'",
                )
            ],
        ),
    ],
)
def test_model_errors_point_into_the_file(data: Any, expected: list[Problem]) -> None:
    assert problems_of(data) == expected


@pytest.mark.parametrize("data", [None, "text", 3])
def test_file_that_is_not_an_object(data: Any) -> None:
    assert problems_of(data) == [
        Problem("$", "the file must hold a JSON object with 'format_version' and 'workflows'")
    ]


def test_stored_definition_reloads_to_the_same_workflow_and_hash() -> None:
    for loaded in load_workflows(SHIPPED):
        stored = json.loads(json.dumps(loaded.workflow.model_dump(mode="json", by_alias=True)))
        reloaded = Workflow.model_validate(stored)
        assert reloaded == loaded.workflow
        assert content_hash(reloaded) == loaded.content_hash


def test_a_step_that_does_not_say_waits_a_day_at_most_for_a_worker() -> None:
    catalog = parse_workflows(
        {"format_version": 1, "workflows": [{"name": "w", "steps": [{"name": "a", "queue": "a"}]}]}
    )
    loaded = catalog.get("w")
    assert loaded is not None
    step = loaded.workflow.steps[0]
    assert step.dispatch_timeout_s == DEFAULT_DISPATCH_TIMEOUT_S == 86_400
    assert step.heartbeat_s == 60
