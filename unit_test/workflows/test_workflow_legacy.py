"""The legacy OMOTES format loads unchanged as one-step workflows; problems name places in it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from segue.workflows.legacy import legacy_path
from segue.workflows.lint import Problem
from segue.workflows.loader import (
    WorkflowConfigError,
    content_hash,
    load_workflows,
    parse_workflows,
)
from segue.workflows.model import Workflow
from segue.workflows.parameters import ParameterError, resolve_params

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "examples" / "omotes_legacy.json"

LEGACY: list[dict[str, Any]] = [
    {
        "workflow_type_name": "grow_optimizer_default",
        "workflow_type_description_name": "Grow Optimizer",
    },
    {
        "workflow_type_name": "simulator",
        "workflow_type_description_name": "Simulator",
        "workflow_parameters": [
            {
                "parameter_type": "string",
                "key_name": "mode",
                "title": "Mode",
                "description": "How thorough.",
                "default": "fast",
                "enum_options": [
                    {"key_name": "fast", "display_name": "Fast"},
                    {"key_name": "exact", "display_name": "Exact"},
                ],
            },
            {"parameter_type": "integer", "key_name": "runs", "minimum": 1, "maximum": 10},
            {"parameter_type": "float", "key_name": "gap", "default": 0.1},
            {"parameter_type": "boolean", "key_name": "verbose", "default": False},
            {
                "parameter_type": "datetime",
                "key_name": "start_time",
                "default": "2019-01-01T00:00:00+00:00",
            },
            {
                "parameter_type": "datetime",
                "key_name": "end_time",
                "default": "2019-01-02T00:00:00+00:00",
                "constraints": [{"other_key_name": "start_time", "relation": "greater"}],
            },
            {"parameter_type": "duration", "key_name": "timestep", "default": 3600},
        ],
    },
]


def problems_of(data: Any) -> list[Problem]:
    """The problems parse_workflows reports for ``data``."""
    with pytest.raises(WorkflowConfigError) as caught:
        parse_workflows(data)
    return caught.value.problems


def changed(index: int, **fields: Any) -> list[dict[str, Any]]:
    """LEGACY with fields of its ``index``-th workflow type replaced."""
    data = copy.deepcopy(LEGACY)
    data[index].update(fields)
    return data


def with_param(index: int, **fields: Any) -> list[dict[str, Any]]:
    """LEGACY with fields of the simulator's ``index``-th parameter replaced."""
    data = copy.deepcopy(LEGACY)
    data[1]["workflow_parameters"][index].update(fields)
    return data


P = "$[1].workflow_parameters"


# --- loading ---------------------------------------------------------------------------


def test_example_file_loads_as_one_step_workflows() -> None:
    catalog = load_workflows(EXAMPLE)
    assert catalog.names == ["grow_optimizer_default", "grow_simulator", "simulator"]
    assert catalog.queues() == {"grow_optimizer_default", "grow_simulator", "simulator"}
    for loaded in catalog:
        [step] = loaded.workflow.steps
        assert step.name == step.queue == loaded.workflow.name
        assert step.next is None


def test_example_simulator_defaults_and_constraint() -> None:
    simulator = load_workflows(EXAMPLE).get("simulator")
    assert simulator is not None
    assert simulator.workflow.description == "Conceptual Design - Simulation"
    assert resolve_params(simulator.workflow, {}) == {
        "start_time": "2019-01-01T00:00:00+00:00",
        "end_time": "2019-01-08T00:00:00+00:00",
        "timestep": 3600,
    }
    with pytest.raises(ParameterError) as caught:
        resolve_params(simulator.workflow, {"end_time": "2018-12-31T00:00:00+00:00"})
    assert caught.value.problems == [
        "params.end_time: must be greater than params.start_time "
        "(2018-12-31T00:00:00+00:00 ≤ 2019-01-01T00:00:00+00:00)"
    ]
    with pytest.raises(ParameterError, match="PT30S is shorter than the minimum PT1M"):
        resolve_params(simulator.workflow, {"timestep": "PT30S"})


def test_every_legacy_field_maps_to_the_parameter_model() -> None:
    simulator = parse_workflows(LEGACY).get("simulator")
    assert simulator is not None
    mode, runs, gap, verbose, start, end, timestep = simulator.workflow.parameters
    assert mode.model_dump(exclude_defaults=True) == {
        "name": "mode",
        "title": "Mode",
        "description": "How thorough.",
        "default": "fast",
        "enum": [{"value": "fast", "label": "Fast"}, {"value": "exact", "label": "Exact"}],
    }
    assert (runs.type, runs.model_dump()["minimum"], runs.model_dump()["maximum"]) == (
        "integer",
        1,
        10,
    )
    assert (gap.type, verbose.type, start.type, timestep.type) == (
        "float",
        "boolean",
        "datetime",
        "duration",
    )
    assert [c.model_dump() for c in end.constraints] == [
        {"other": "start_time", "relation": "greater"}
    ]
    schema = simulator.parameters_schema["properties"]
    assert schema["mode"]["x-enum-labels"] == {"fast": "Fast", "exact": "Exact"}


def test_legacy_workflows_are_stored_and_reloaded_like_any() -> None:
    for loaded in load_workflows(EXAMPLE):
        stored = json.loads(json.dumps(loaded.workflow.model_dump(mode="json", by_alias=True)))
        assert Workflow.model_validate(stored) == loaded.workflow
        assert content_hash(Workflow.model_validate(stored)) == loaded.content_hash


def test_workflow_parameters_may_be_left_out_or_empty() -> None:
    catalog = parse_workflows(changed(1, workflow_parameters=[]))
    loaded = catalog.get("simulator")
    assert loaded is not None
    assert loaded.workflow.parameters == []


# --- problems with legacy paths --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            with_param(2, parameter_type="double"),
            [
                Problem(
                    f"{P}[2].parameter_type",
                    "must be one of 'string', 'boolean', 'integer', 'float', 'datetime', "
                    """'duration', 'list' (got "double")""",
                )
            ],
        ),
        (
            [LEGACY[0], LEGACY[1], {**LEGACY[1], "workflow_parameters": [{"key_name": "x"}]}],
            [Problem("$[2].workflow_parameters[0].parameter_type", "required key is missing")],
        ),
        (
            [LEGACY[0], LEGACY[1], LEGACY[0]],
            [
                Problem(
                    "$[2].workflow_type_name",
                    "duplicate workflow name 'grow_optimizer_default' (also at $[0])",
                ),
            ],
        ),
        (
            with_param(0, type="string"),
            [Problem(f"{P}[0].type", "unknown key (not allowed here)")],
        ),
        (
            changed(0, steps=[], version="2"),
            [
                Problem("$[0].steps", "unknown key (not allowed here)"),
                Problem("$[0].version", "unknown key (not allowed here)"),
            ],
        ),
        (
            [{"workflow_type_name": "grow_simulator"}],
            [Problem("$[0].workflow_type_description_name", "required key is missing")],
        ),
        (
            [{"workflow_type_description_name": "Nameless"}],
            [Problem("$[0].workflow_type_name", "required key is missing")],
        ),
        (
            changed(0, workflow_type_name="grow optimizer"),
            [
                Problem(
                    "$[0].workflow_type_name",
                    "must be a name: a letter, then up to 99 letters, digits, '_' or '-' "
                    '(got "grow optimizer")',
                )
            ],
        ),
        (
            changed(0, workflow_type_name="grow.optimizer"),
            [
                Problem(
                    "$[0].workflow_type_name",
                    "must be a name: a letter, then up to 99 letters, digits, '_' or '-' "
                    '(got "grow.optimizer")',
                )
            ],
        ),
        (
            changed(0, workflow_type_name=7),
            [Problem("$[0].workflow_type_name", "Input should be a valid string (got 7)")],
        ),
        (
            with_param(1, key_name="number of runs"),
            [
                Problem(
                    f"{P}[1].key_name",
                    "String should match pattern '^[A-Za-z_][A-Za-z0-9_]{0,99}$' "
                    '(got "number of runs")',
                )
            ],
        ),
        (
            with_param(1, key_name="mode"),
            [Problem(f"{P}[1].key_name", f"duplicate parameter name 'mode' (also at {P}[0])")],
        ),
        (
            with_param(0, enum_options=[{"key_name": "a", "display": "A"}], default=None),
            [Problem(f"{P}[0].enum_options[0].display", "unknown key (not allowed here)")],
        ),
        (
            with_param(0, enum_options=[{"key_name": "a"}, {"key_name": "a"}], default="a"),
            [
                Problem(
                    f"{P}[0].enum_options[1].key_name",
                    f"duplicate enum value 'a' (also at {P}[0].enum_options[0])",
                )
            ],
        ),
        (
            with_param(0, enum_options=[{"display_name": "A"}], default=None),
            [Problem(f"{P}[0].enum_options[0].key_name", "required key is missing")],
        ),
        (
            with_param(1, enum_options=[{"key_name": "a", "display_name": "A"}]),
            [Problem(f"{P}[1].enum_options", "unknown key (not allowed here)")],
        ),
        (
            # (without an offset it would load, as UTC: unit_test/omotes)
            with_param(4, default="2019-01-01 at noon"),
            [
                Problem(
                    f"{P}[4].default",
                    "must be a date-time with a timezone offset (ISO 8601, e.g. "
                    '2030-01-01T00:00:00+00:00) (got "2019-01-01 at noon")',
                )
            ],
        ),
        (
            with_param(5, constraints=[{"other_key_name": "start", "relation": "greater"}]),
            [
                Problem(
                    f"{P}[5].constraints[0].other_key_name",
                    "unknown parameter 'start' (parameters: mode, runs, gap, verbose, "
                    "start_time, end_time, timestep)",
                )
            ],
        ),
        (
            with_param(5, constraints=[{"other_key_name": "timestep", "relation": "greater"}]),
            [
                Problem(
                    f"{P}[5].constraints[0].other_key_name",
                    "parameter 'timestep' is a duration, which does not compare with "
                    "'end_time', a datetime",
                )
            ],
        ),
        (
            with_param(5, constraints=[{"other": "start_time", "relation": "greater"}]),
            [
                Problem(f"{P}[5].constraints[0].other", "unknown key (not allowed here)"),
                Problem(f"{P}[5].constraints[0].other_key_name", "required key is missing"),
            ],
        ),
        (
            with_param(4, default="2019-01-03T00:00:00+00:00"),
            [
                Problem(
                    f"{P}[5].constraints[0]",
                    "the defaults break it: end_time must be greater than params.start_time "
                    "(2019-01-02T00:00:00+00:00 ≤ 2019-01-03T00:00:00+00:00)",
                )
            ],
        ),
        (
            [LEGACY[0], "simulator"],
            [
                Problem(
                    "$[1]",
                    'Input should be a valid dictionary or instance of Workflow (got "simulator")',
                )
            ],
        ),
        ([], [Problem("$", "List should have at least 1 item after validation, not 0")]),
    ],
)
def test_problems_point_into_the_legacy_file(data: Any, expected: list[Problem]) -> None:
    assert problems_of(data) == expected


def test_legacy_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "workflow_config.json"
    path.write_text(json.dumps(with_param(2, parameter_type="double")))
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflows(path)
    assert str(caught.value).splitlines()[:2] == [
        f"invalid workflow file {path} (1 problem(s)):",
        f"  {P}[2].parameter_type: must be one of 'string', 'boolean', 'integer', 'float', "
        """'datetime', 'duration', 'list' (got "double")""",
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.workflows", "$"),
        ("$.workflows[2]", "$[2]"),
        ("$.workflows[2].name", "$[2].workflow_type_name"),
        ("$.workflows[2].description", "$[2].workflow_type_description_name"),
        ("$.workflows[2].steps[0].queue", "$[2].workflow_type_name"),
        ("$.workflows[2].parameters", "$[2].workflow_parameters"),
        ("$.workflows[2].parameters[0].type", "$[2].workflow_parameters[0].parameter_type"),
        ("$.workflows[2].parameters[0].name", "$[2].workflow_parameters[0].key_name"),
        ("$.workflows[2].parameters[0].minimum", "$[2].workflow_parameters[0].minimum"),
        (
            "$.workflows[2].parameters[0].enum[1].label",
            "$[2].workflow_parameters[0].enum_options[1].display_name",
        ),
        (
            "$.workflows[2].parameters[0].constraints[1].relation",
            "$[2].workflow_parameters[0].constraints[1].relation",
        ),
    ],
)
def test_legacy_path(path: str, expected: str) -> None:
    assert legacy_path(path) == expected
