"""Lint of inputs, map, parallel and repeat: one invalid example per rule (path + reason)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from segue.workflows.lint import Problem, lint
from segue.workflows.loader import WorkflowConfigError, parse_workflows
from segue.workflows.model import WorkflowFile

Json = dict[str, Any]
W = "$.workflows[0]"
S = f"{W}.steps"


def base() -> Json:
    """A valid study: optimise -> simulate (map) -> assess (parallel) -> compare (repeat)."""
    return {
        "format_version": 1,
        "workflows": [
            {
                "name": "study",
                "parameters": [
                    {"name": "scenarios", "type": "list", "items": {"type": "string"}},
                    {"name": "region", "type": "string", "default": "nl"},
                ],
                "steps": [
                    {"name": "optimise", "queue": "optimise", "next": "simulate"},
                    {
                        "name": "simulate",
                        "queue": "simulate",
                        "map": {"over": "outputs.optimise.scenarios", "max_concurrency": 3},
                        "input": {"plan": "outputs.optimise", "region": "params.region"},
                        "next": "assess",
                        "on_failure": "cleanup",
                    },
                    {
                        "name": "assess",
                        "parallel": {"branches": ["costs", "emissions"]},
                        "next": "compare",
                    },
                    {"name": "costs", "queue": "report", "input": {"runs": "outputs.simulate"}},
                    {"name": "emissions", "queue": "report"},
                    {
                        "name": "compare",
                        "queue": "report",
                        "input": {"costs": "outputs.costs.total", "all": "outputs.assess"},
                        "repeat": {
                            "until": {
                                "var": "outputs.compare.converged",
                                "op": "==",
                                "value": True,
                            },
                            "max_iterations": 3,
                        },
                    },
                    {"name": "cleanup", "queue": "report", "input": {"why": "outputs._failure"}},
                ],
            }
        ],
    }


def lint_after(change: Callable[[Json], None]) -> list[Problem]:
    """Lint the base file after ``change`` edits a copy of it."""
    data = copy.deepcopy(base())
    change(data)
    return lint(WorkflowFile.model_validate(data))


def steps(data: Json) -> list[Json]:
    """The steps of the first workflow."""
    found: list[Json] = data["workflows"][0]["steps"]
    return found


def set_step(index: int, key: str, value: Any) -> Callable[[Json], None]:
    """A change that sets ``key`` of step ``index``."""
    return lambda data: steps(data)[index].__setitem__(key, value)


def test_base_is_clean() -> None:
    assert lint_after(lambda data: None) == []


def _add_step(step: Json) -> Callable[[Json], None]:
    return lambda data: steps(data).append(step)


def _both(data: Json) -> None:
    steps(data)[2]["queue"] = "assess"


def _branch_of_two(data: Json) -> None:
    steps(data)[6]["next"] = "again"
    steps(data).append({"name": "again", "parallel": {"branches": ["costs"]}})


def _nested(data: Json) -> None:
    steps(data)[4] = {"name": "emissions", "parallel": {"branches": ["extra"]}}
    steps(data).append({"name": "extra", "queue": "report"})


CASES: list[tuple[str, Callable[[Json], None], list[Problem]]] = [
    (
        "a step with both queue and parallel",
        _both,
        [
            Problem(
                f"{S}[2]",
                "a step has either 'queue' (it runs a task) or 'parallel' "
                "(it runs branch steps), not both",
            )
        ],
    ),
    (
        "a step with neither queue nor parallel",
        lambda data: steps(data)[6].pop("queue"),
        [
            Problem(
                f"{S}[6]",
                "a step needs 'queue' (the task type of the workers that run it) "
                "or 'parallel' (the branch steps it runs)",
            )
        ],
    ),
    (
        "a parallel step with task settings",
        set_step(2, "timeout_s", 10),
        [
            Problem(
                f"{S}[2].timeout_s",
                "a parallel step runs no task of its own, so 'timeout_s' does not apply "
                "(set it on the branch steps)",
            )
        ],
    ),
    (
        "an unknown branch",
        set_step(2, "parallel", {"branches": ["costs", "emissions", "ghg"]}),
        [
            Problem(
                f"{S}[2].parallel.branches[2]",
                "unknown step 'ghg' (steps: optimise, simulate, assess, costs, emissions, "
                "compare, cleanup)",
            )
        ],
    ),
    (
        "a branch that is not a task step",
        _nested,
        [Problem(f"{S}[4]", "branch 'emissions' of 'assess' must be a task step (with a queue)")],
    ),
    (
        "a branch with a next",
        set_step(4, "next", "compare"),
        [
            Problem(
                f"{S}[4].next",
                "step 'emissions' is a branch of parallel step 'assess', so its 'next' must be "
                "null: 'assess' continues after the join",
            )
        ],
    ),
    (
        "a branch listed twice",
        set_step(2, "parallel", {"branches": ["costs", "emissions", "costs"]}),
        [
            Problem(
                f"{S}[2].parallel.branches[2]",
                f"step 'costs' is already a branch (at {S}[2].parallel.branches[0])",
            )
        ],
    ),
    (
        "a branch of two parallel steps",
        _branch_of_two,
        [
            Problem(
                f"{S}[7].parallel.branches[0]",
                f"step 'costs' is already a branch (at {S}[2].parallel.branches[0])",
            )
        ],
    ),
    (
        "a branch that is also a next target",
        set_step(6, "next", "costs"),
        [
            Problem(
                f"{S}[6].next",
                "step 'costs' is a branch of parallel step 'assess' and runs only there; "
                "continue with 'assess' instead",
            )
        ],
    ),
    (
        "a branch as the first step",
        lambda data: steps(data).insert(0, steps(data).pop(3)),
        [
            Problem(f"{S}[0]", "the first step cannot be a branch of parallel step 'assess'"),
            Problem(f"{S}[1]", "step 'optimise' is unreachable from the first step 'costs'"),
            Problem(f"{S}[2]", "step 'simulate' is unreachable from the first step 'costs'"),
            Problem(f"{S}[3]", "step 'assess' is unreachable from the first step 'costs'"),
            Problem(f"{S}[4]", "step 'emissions' is unreachable from the first step 'costs'"),
            Problem(f"{S}[6]", "step 'cleanup' is unreachable from the first step 'costs'"),
        ],
    ),
    (
        "a branch with its own on_failure",
        set_step(3, "on_failure", "cleanup"),
        [
            Problem(
                f"{S}[3].on_failure",
                "a failed branch counts against tolerate_failures of 'assess'; "
                "put 'on_failure' on 'assess'",
            )
        ],
    ),
    (
        "a branch that repeats",
        set_step(4, "repeat", {"until": {"exists": "outputs.emissions.t"}, "max_iterations": 2}),
        [
            Problem(
                f"{S}[4].repeat",
                "a branch cannot have 'repeat' (not supported); make it a step of its own",
            )
        ],
    ),
    (
        "a parallel step that is its own branch",
        set_step(2, "parallel", {"branches": ["costs", "emissions", "assess"]}),
        [Problem(f"{S}[2].parallel.branches[2]", "a parallel step cannot be its own branch")],
    ),
    (
        "a map over an unknown parameter",
        set_step(1, "map", {"over": "params.scenario"}),
        [
            Problem(
                f"{S}[1].map.over",
                "unknown parameter 'scenario' (parameters: scenarios, region)",
            )
        ],
    ),
    (
        "a map over a parameter that is no list",
        set_step(1, "map", {"over": "params.region"}),
        [
            Problem(
                f"{S}[1].map.over",
                "parameter 'region' is a string, not a list: a map needs a parameter of type "
                "'list' (or a list in an earlier step's output)",
            )
        ],
    ),
    (
        "a map over outputs of a step that runs later",
        set_step(1, "map", {"over": "outputs.compare.cases"}),
        [
            Problem(
                f"{S}[1].map.over",
                "step 'compare' never runs before step 'simulate', "
                "so 'outputs.compare.cases' is always missing",
            )
        ],
    ),
    (
        "a map over its own output",
        set_step(1, "map", {"over": "outputs.simulate.items"}),
        [
            Problem(
                f"{S}[1].map.over",
                "step 'simulate' never runs before step 'simulate', "
                "so 'outputs.simulate.items' is always missing",
            )
        ],
    ),
    (
        "an input of an unknown parameter",
        set_step(1, "input", {"region": "params.country"}),
        [
            Problem(
                f"{S}[1].input.region",
                "unknown parameter 'country' (parameters: scenarios, region)",
            )
        ],
    ),
    (
        "an input of an unknown step",
        set_step(1, "input", {"plan": "outputs.optimize"}),
        [Problem(f"{S}[1].input.plan", "unknown step 'optimize' in 'outputs.optimize'")],
    ),
    (
        "an input of a step that has not run yet",
        set_step(1, "input", {"x": "outputs.costs.total"}),
        [
            Problem(
                f"{S}[1].input.x",
                "step 'costs' never runs before step 'simulate', "
                "so 'outputs.costs.total' is always missing",
            )
        ],
    ),
    (
        "an input of a sibling branch",
        set_step(3, "input", {"t": "outputs.emissions"}),
        [
            Problem(
                f"{S}[3].input.t",
                "step 'emissions' never runs before step 'costs', "
                "so 'outputs.emissions' is always missing",
            )
        ],
    ),
    (
        "a branch reading its parallel step's output",
        set_step(3, "input", {"t": "outputs.assess"}),
        [
            Problem(
                f"{S}[3].input.t",
                "step 'assess' never runs before step 'costs', "
                "so 'outputs.assess' is always missing",
            )
        ],
    ),
    (
        "an input of the step's own output",
        set_step(5, "input", {"before": "outputs.compare"}),
        [
            Problem(
                f"{S}[5].input.before",
                "a step cannot take its own output as input ('outputs.compare'); a repeated "
                "step without 'input' finds its previous output under its own name",
            )
        ],
    ),
    (
        "an input of the failure off the failure path",
        set_step(5, "input", {"why": "outputs._failure.error"}),
        [
            Problem(
                f"{S}[5].input.why",
                "step 'compare' never runs after an on_failure, "
                "so 'outputs._failure.error' is always missing",
            )
        ],
    ),
    (
        "an until on an unknown step",
        set_step(5, "repeat", {"until": {"exists": "outputs.comapre.x"}, "max_iterations": 2}),
        [Problem(f"{S}[5].repeat.until.exists", "unknown step 'comapre' in 'outputs.comapre.x'")],
    ),
    (
        "a loop through next even with a repeat elsewhere",
        set_step(5, "next", "simulate"),
        [
            Problem(
                f"{S}[5].next",
                "loop without a bound: simulate -> assess -> costs -> compare -> simulate "
                "(to run a step again, give it 'repeat')",
            )
        ],
    ),
    (
        "list min_items above max_items",
        lambda data: data["workflows"][0]["parameters"][0].update(min_items=3, max_items=2),
        [Problem(f"{W}.parameters[0].min_items", "min_items 3 is greater than max_items 2")],
    ),
    (
        "a list default with an item of the wrong type",
        lambda data: data["workflows"][0]["parameters"][0].update(default=["a", 1]),
        [Problem(f"{W}.parameters[0].default", "1 is not a string")],
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [pytest.param(change, expected, id=name) for name, change, expected in CASES],
)
def test_rule(change: Callable[[Json], None], expected: list[Problem]) -> None:
    assert lint_after(change) == expected


@pytest.mark.parametrize(
    ("where", "value", "path", "reason"),
    [
        (
            "map",
            {"over": "outputs.optimise.scenarios", "max_concurrency": 0},
            f"{S}[1].map.max_concurrency",
            "Input should be greater than or equal to 1 (got 0)",
        ),
        (
            "map",
            {"over": "outputs.optimise.scenarios", "tolerate_failures": -1},
            f"{S}[1].map.tolerate_failures",
            "Input should be greater than or equal to 0 (got -1)",
        ),
        (
            "repeat",
            {"until": {"exists": "outputs.simulate.items"}, "max_iterations": 0},
            f"{S}[1].repeat.max_iterations",
            "Input should be greater than or equal to 1 (got 0)",
        ),
        (
            "input",
            {"plan": "optimise.cost"},
            f"{S}[1].input.plan",
            "must be a variable: params.<name>, outputs.<step> or outputs.<step>.<key>... "
            '(got "optimise.cost")',
        ),
        (
            "input",
            {"bad-name": "params.region"},
            f'{S}[1].input["bad-name"]',
            "String should match pattern '^[A-Za-z_][A-Za-z0-9_]{0,99}$' (got \"bad-name\")",
        ),
        (
            "map",
            {"over": "outputs.optimise"},
            f"{S}[1].map.over",
            "must be a variable: params.<name> or outputs.<step>.<key>[.<key>...] "
            '(got "outputs.optimise")',
        ),
    ],
)
def test_the_model_refuses_bad_numbers_and_variables(
    where: str, value: Any, path: str, reason: str
) -> None:
    data = base()
    steps(data)[1][where] = value
    with pytest.raises(WorkflowConfigError) as caught:
        parse_workflows(data)
    assert caught.value.problems == [Problem(path, reason)]
