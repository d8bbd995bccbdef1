"""Lint: each cross-reference rule, with the JSON path and reason it reports."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from segue.workflows.lint import Problem, lint
from segue.workflows.model import WorkflowFile

Json = dict[str, Any]


def base() -> Json:
    """A valid file: prepare -> optimise -> (simulate ->) report, with a fallback step."""
    return {
        "format_version": 1,
        "workflows": [
            {
                "name": "plan",
                "parameters": [
                    {"name": "simulate", "type": "boolean", "default": True},
                    {"name": "years", "type": "integer", "minimum": 1, "maximum": 50},
                    {
                        "name": "region",
                        "type": "string",
                        "enum": [{"value": "nl"}, {"value": "de"}],
                        "default": "nl",
                    },
                ],
                "steps": [
                    {"name": "prepare", "queue": "prepare", "next": "optimise"},
                    {
                        "name": "optimise",
                        "queue": "optimise",
                        "on_failure": "report",
                        "next": {
                            "branches": [
                                {
                                    "when": {"var": "params.simulate", "op": "==", "value": True},
                                    "goto": "simulate",
                                },
                                {
                                    "when": {"exists": "outputs.optimise.cost"},
                                    "goto": None,
                                },
                            ],
                            "default": "report",
                        },
                    },
                    {"name": "simulate", "queue": "simulate", "next": "report"},
                    {"name": "report", "queue": "report"},
                ],
            },
            {"name": "check", "steps": [{"name": "check", "queue": "check"}]},
        ],
    }


def lint_after(change: Callable[[Json], None]) -> list[Problem]:
    """Lint the base file after ``change`` edits a copy of it."""
    data = copy.deepcopy(base())
    change(data)
    return lint(WorkflowFile.model_validate(data))


def plan(data: Json) -> Json:
    """The first workflow of a file."""
    workflow: Json = data["workflows"][0]
    return workflow


def test_base_file_is_clean() -> None:
    assert lint_after(lambda data: None) == []


def test_same_queue_in_two_steps_with_different_settings_is_fine() -> None:
    def change(data: Json) -> None:
        plan(data)["steps"][2]["queue"] = "optimise"
        plan(data)["steps"][2]["timeout_s"] = 5
        data["workflows"][1]["steps"][0]["queue"] = "optimise"

    assert lint_after(change) == []


W = "$.workflows[0]"
STEPS = f"{W}.steps"
SWITCH = f"{STEPS}[1].next"


def set_in(path: list[str | int], value: Any) -> Callable[[Json], None]:
    """A change that sets ``value`` at ``path`` of the first workflow."""

    def change(data: Json) -> None:
        node: Any = plan(data)
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def append_to(key: str, item: Json) -> Callable[[Json], None]:
    """A change that appends ``item`` to a list of the first workflow."""
    return lambda data: plan(data)[key].append(item)


CASES: list[tuple[str, Callable[[Json], None], list[Problem]]] = [
    (
        "duplicate workflow name",
        set_in(["name"], "check"),
        [
            Problem(
                "$.workflows[1].name", "duplicate workflow name 'check' (also at $.workflows[0])"
            )
        ],
    ),
    (
        "duplicate step name",
        append_to("steps", {"name": "simulate", "queue": "other"}),
        [Problem(f"{STEPS}[4].name", f"duplicate step name 'simulate' (also at {STEPS}[2])")],
    ),
    (
        "duplicate parameter name",
        append_to("parameters", {"name": "years", "type": "float"}),
        [
            Problem(
                f"{W}.parameters[3].name",
                f"duplicate parameter name 'years' (also at {W}.parameters[1])",
            )
        ],
    ),
    (
        "next names an unknown step",
        set_in(["steps", 0, "next"], "optimize"),
        [
            Problem(
                f"{STEPS}[0].next",
                "unknown step 'optimize' (steps: prepare, optimise, simulate, report)",
            ),
            Problem(f"{STEPS}[1]", "step 'optimise' is unreachable from the first step 'prepare'"),
            Problem(f"{STEPS}[2]", "step 'simulate' is unreachable from the first step 'prepare'"),
            Problem(f"{STEPS}[3]", "step 'report' is unreachable from the first step 'prepare'"),
        ],
    ),
    (
        "goto names an unknown step",
        set_in(["steps", 1, "next", "branches", 1, "goto"], "nowhere"),
        [
            Problem(
                f"{SWITCH}.branches[1].goto",
                "unknown step 'nowhere' (steps: prepare, optimise, simulate, report)",
            )
        ],
    ),
    (
        "default names an unknown step",
        set_in(["steps", 1, "next", "default"], "nowhere"),
        [
            Problem(
                f"{SWITCH}.default",
                "unknown step 'nowhere' (steps: prepare, optimise, simulate, report)",
            )
        ],
    ),
    (
        "on_failure names an unknown step",
        set_in(["steps", 1, "on_failure"], "nowhere"),
        [
            Problem(
                f"{STEPS}[1].on_failure",
                "unknown step 'nowhere' (steps: prepare, optimise, simulate, report)",
            )
        ],
    ),
    (
        "a step goes to itself",
        set_in(["steps", 3, "next"], "report"),
        [
            Problem(
                f"{STEPS}[3].next",
                "loop without a bound: report -> report (to run a step again, give it 'repeat')",
            )
        ],
    ),
    (
        "a branch goes back to an earlier step",
        set_in(["steps", 1, "next", "branches", 1, "goto"], "prepare"),
        [
            Problem(
                f"{SWITCH}.branches[1].goto",
                "loop without a bound: prepare -> optimise -> prepare "
                "(to run a step again, give it 'repeat')",
            )
        ],
    ),
    (
        "on_failure goes back to an earlier step",
        set_in(["steps", 2, "on_failure"], "optimise"),
        [
            Problem(
                f"{STEPS}[2].on_failure",
                "loop without a bound: optimise -> simulate -> optimise "
                "(to run a step again, give it 'repeat')",
            )
        ],
    ),
    (
        "unreachable step",
        append_to("steps", {"name": "orphan", "queue": "orphan", "next": "report"}),
        [Problem(f"{STEPS}[4]", "step 'orphan' is unreachable from the first step 'prepare'")],
    ),
    (
        "condition on an unknown parameter",
        set_in(["steps", 1, "next", "branches", 0, "when", "var"], "params.simulation"),
        [
            Problem(
                f"{SWITCH}.branches[0].when.var",
                "unknown parameter 'simulation' (parameters: simulate, years, region)",
            )
        ],
    ),
    (
        "nested condition on outputs of an unknown step",
        set_in(
            ["steps", 1, "next", "branches", 1, "when"],
            {"all": [{"not": {"exists": "outputs.optimize.cost"}}]},
        ),
        [
            Problem(
                f"{SWITCH}.branches[1].when.all[0].not.exists",
                "unknown step 'optimize' in 'outputs.optimize.cost'",
            )
        ],
    ),
    (
        "condition on outputs of a step that runs later",
        set_in(["steps", 1, "next", "branches", 1, "when", "exists"], "outputs.report.pdf"),
        [
            Problem(
                f"{SWITCH}.branches[1].when.exists",
                "step 'report' never runs before step 'optimise', "
                "so 'outputs.report.pdf' is always missing",
            )
        ],
    ),
    (
        "minimum above maximum",
        set_in(["parameters", 1, "minimum"], 60),
        [Problem(f"{W}.parameters[1].minimum", "minimum 60 is greater than maximum 50")],
    ),
    (
        "min_length above max_length",
        append_to("parameters", {"name": "s", "type": "string", "min_length": 4, "max_length": 3}),
        [Problem(f"{W}.parameters[3].min_length", "min_length 4 is greater than max_length 3")],
    ),
    (
        "default above maximum",
        set_in(["parameters", 1, "default"], 200),
        [Problem(f"{W}.parameters[1].default", "200 is greater than the maximum of 50")],
    ),
    (
        "float default below minimum",
        append_to("parameters", {"name": "f", "type": "float", "minimum": 0.5, "default": 0}),
        [Problem(f"{W}.parameters[3].default", "0.0 is less than the minimum of 0.5")],
    ),
    (
        "default not among the enum values",
        set_in(["parameters", 2, "default"], "fr"),
        [Problem(f"{W}.parameters[2].default", "'fr' is not one of 'nl', 'de'")],
    ),
    (
        "default shorter than min_length",
        append_to("parameters", {"name": "s", "type": "string", "min_length": 2, "default": "a"}),
        [Problem(f"{W}.parameters[3].default", "'a' is shorter than the minimum length of 2")],
    ),
    (
        "enum with a duplicate value",
        set_in(["parameters", 2, "enum"], [{"value": "nl"}, {"value": "de"}, {"value": "nl"}]),
        [
            Problem(
                f"{W}.parameters[2].enum[2].value",
                f"duplicate enum value 'nl' (also at {W}.parameters[2].enum[0])",
            )
        ],
    ),
    (
        "required parameter with a default",
        set_in(["parameters", 0, "required"], True),
        [
            Problem(
                f"{W}.parameters[0].default",
                "a required parameter has no default: the submitter must give a value",
            )
        ],
    ),
    (
        "datetime minimum after maximum",
        append_to(
            "parameters",
            {
                "name": "t",
                "type": "datetime",
                "minimum": "2030-01-01T00:00:00+00:00",
                "maximum": "2030-01-01T00:30:00+01:00",
            },
        ),
        [
            Problem(
                f"{W}.parameters[3].minimum",
                "minimum 2030-01-01T00:00:00+00:00 is after maximum 2030-01-01T00:30:00+01:00",
            )
        ],
    ),
    (
        "duration minimum longer than maximum",
        append_to(
            "parameters", {"name": "d", "type": "duration", "minimum": 7200, "maximum": "PT1H"}
        ),
        [Problem(f"{W}.parameters[3].minimum", "minimum 7200 s is longer than maximum PT1H")],
    ),
    (
        "datetime default before minimum",
        append_to(
            "parameters",
            {
                "name": "t",
                "type": "datetime",
                "minimum": "2030-01-01T00:00:00Z",
                "default": "2029-01-01T00:00:00Z",
            },
        ),
        [
            Problem(
                f"{W}.parameters[3].default",
                "2029-01-01T00:00:00Z is before the minimum 2030-01-01T00:00:00Z",
            )
        ],
    ),
    (
        "duration default longer than maximum",
        append_to(
            "parameters", {"name": "d", "type": "duration", "maximum": "P1D", "default": "P2D"}
        ),
        [Problem(f"{W}.parameters[3].default", "P2D is longer than the maximum P1D")],
    ),
    (
        "constraint on an unknown parameter",
        set_in(["parameters", 1, "constraints"], [{"other": "yaers", "relation": "greater"}]),
        [
            Problem(
                f"{W}.parameters[1].constraints[0].other",
                "unknown parameter 'yaers' (parameters: simulate, years, region)",
            )
        ],
    ),
    (
        "constraint on the parameter itself",
        set_in(["parameters", 1, "constraints"], [{"other": "years", "relation": "eq"}]),
        [
            Problem(
                f"{W}.parameters[1].constraints[0].other",
                "a parameter cannot be compared with itself",
            )
        ],
    ),
    (
        "constraint on a parameter without order",
        set_in(["parameters", 2, "constraints"], [{"other": "years", "relation": "greater"}]),
        [
            Problem(
                f"{W}.parameters[2].constraints[0]",
                "a string parameter has no order: constraints compare numbers, "
                "datetimes or durations",
            )
        ],
    ),
    (
        "constraint between incomparable types",
        append_to(
            "parameters",
            {
                "name": "window",
                "type": "duration",
                "constraints": [{"other": "years", "relation": "smaller"}],
            },
        ),
        [
            Problem(
                f"{W}.parameters[3].constraints[0].other",
                "parameter 'years' is an integer, which does not compare with 'window', a duration",
            )
        ],
    ),
    (
        "constraint on a boolean",
        set_in(["parameters", 1, "constraints"], [{"other": "simulate", "relation": "greater"}]),
        [
            Problem(
                f"{W}.parameters[1].constraints[0].other",
                "parameter 'simulate' is a boolean, which does not compare with 'years', "
                "an integer",
            )
        ],
    ),
    (
        "defaults that break a constraint",
        lambda data: plan(data)["parameters"].extend(
            [
                {"name": "start", "type": "datetime", "default": "2030-01-02T00:00:00Z"},
                {
                    "name": "end",
                    "type": "datetime",
                    "default": "2030-01-01T00:00:00Z",
                    "constraints": [{"other": "start", "relation": "greater"}],
                },
            ]
        ),
        [
            Problem(
                f"{W}.parameters[4].constraints[0]",
                "the defaults break it: end must be greater than params.start "
                "(2030-01-01T00:00:00Z ≤ 2030-01-02T00:00:00Z)",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [pytest.param(change, expected, id=name) for name, change, expected in CASES],
)
def test_rule(change: Callable[[Json], None], expected: list[Problem]) -> None:
    assert lint_after(change) == expected


def test_every_loop_in_a_workflow_is_reported_once() -> None:
    def change(data: Json) -> None:
        plan(data)["steps"][3]["next"] = "simulate"  # simulate <-> report
        plan(data)["steps"][0]["on_failure"] = "prepare"

    paths = sorted(problem.path for problem in lint_after(change))
    assert paths == [f"{STEPS}[0].on_failure", f"{STEPS}[3].next"]


def test_problem_reads_as_path_and_reason() -> None:
    assert str(Problem("$.workflows[0].name", "bad")) == "$.workflows[0].name: bad"


def test_constraints_between_comparable_parameters_are_fine() -> None:
    def change(data: Json) -> None:
        plan(data)["parameters"].extend(
            [
                {"name": "price", "type": "float", "default": 60.5},
                {"name": "start", "type": "datetime", "default": "2030-01-01T00:00:00Z"},
                {"name": "end", "type": "datetime", "default": "2030-01-02T00:00:00Z"},
                {"name": "step", "type": "duration", "default": "PT1H"},
                {"name": "window", "type": "duration", "default": 86400},
            ]
        )
        params = {param["name"]: param for param in plan(data)["parameters"]}
        params["years"]["constraints"] = [{"other": "price", "relation": "smaller"}]
        params["end"]["constraints"] = [{"other": "start", "relation": "greater"}]
        params["window"]["constraints"] = [{"other": "step", "relation": "greater_or_eq"}]

    assert lint_after(change) == []
