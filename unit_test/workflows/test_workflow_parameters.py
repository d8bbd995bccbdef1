"""Job parameters: the JSON Schema a workflow's specs compile to, checks and defaults."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from segue.errors import SegueError
from segue.workflows.model import Workflow
from segue.workflows.parameters import ParameterError, parameters_schema, resolve_params


def workflow(*parameters: dict[str, Any]) -> Workflow:
    """A one-step workflow with these parameter specs."""
    return Workflow.model_validate(
        {
            "name": "plan",
            "parameters": list(parameters),
            "steps": [{"name": "run", "queue": "run"}],
        }
    )


PLAN = workflow(
    {
        "name": "mode",
        "type": "string",
        "enum": [{"value": "fast", "label": "Fast"}, {"value": "exact"}],
        "default": "fast",
    },
    {"name": "horizon_years", "type": "integer", "minimum": 1, "maximum": 50, "default": 10},
    {"name": "simulate", "type": "boolean", "default": True},
    {"name": "price", "type": "float", "minimum": 0},
    {"name": "label", "type": "string", "min_length": 2, "max_length": 5},
    {"name": "scenario", "type": "string", "required": True, "title": "Scenario"},
)


def problems_of(raw: dict[str, Any]) -> list[str]:
    """The problems resolve_params reports for ``raw``."""
    with pytest.raises(ParameterError) as caught:
        resolve_params(PLAN, raw)
    return caught.value.problems


def test_defaults_fill_in_what_the_submitter_left_out() -> None:
    assert resolve_params(PLAN, {"scenario": "base"}) == {
        "mode": "fast",
        "horizon_years": 10,
        "simulate": True,
        "scenario": "base",
    }


def test_given_values_win_over_defaults() -> None:
    raw = {"scenario": "s", "mode": "exact", "horizon_years": 50, "simulate": False}
    raw |= {"price": 12, "label": "ab"}
    assert resolve_params(PLAN, raw) == raw


def test_float_parameter_accepts_ints_and_floats() -> None:
    assert resolve_params(PLAN, {"scenario": "s", "price": 0})["price"] == 0
    assert resolve_params(PLAN, {"scenario": "s", "price": 2.5})["price"] == 2.5


def test_integral_float_for_an_integer_parameter_becomes_an_int() -> None:
    value = resolve_params(PLAN, {"scenario": "s", "horizon_years": 20.0})["horizon_years"]
    assert value == 20
    assert type(value) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"horizon_years": 200}, "params.horizon_years: 200 is greater than the maximum of 50"),
        ({"horizon_years": 0}, "params.horizon_years: 0 is less than the minimum of 1"),
        ({"horizon_years": 1.5}, "params.horizon_years: 1.5 is not an integer"),
        ({"horizon_years": True}, "params.horizon_years: True is not an integer"),
        ({"horizon_years": "5"}, "params.horizon_years: '5' is not an integer"),
        ({"price": True}, "params.price: True is not a number"),
        ({"price": -1}, "params.price: -1 is less than the minimum of 0.0"),
        ({"simulate": 1}, "params.simulate: 1 is not a boolean"),
        ({"simulate": "true"}, "params.simulate: 'true' is not a boolean"),
        ({"mode": "x"}, "params.mode: 'x' is not one of 'fast', 'exact'"),
        ({"label": "a"}, "params.label: 'a' is shorter than the minimum length of 2"),
        ({"label": "abcdef"}, "params.label: 'abcdef' is longer than the maximum length of 5"),
        ({"scenario": None}, "params.scenario: None is not a string"),
        (
            {"colour": "red"},
            "params.colour: unknown parameter "
            "(known: mode, horizon_years, simulate, price, label, scenario)",
        ),
    ],
)
def test_each_kind_of_invalid_value_is_named_precisely(raw: dict[str, Any], expected: str) -> None:
    assert problems_of({"scenario": "s"} | raw) == [expected]


def test_missing_required_parameter() -> None:
    assert problems_of({}) == ["params.scenario: missing (this parameter is required)"]


def test_all_problems_are_reported_sorted_and_joined_in_the_message() -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_params(PLAN, {"horizon_years": 0, "mode": "x", "zz": 1, "aa": 2})
    known = "(known: mode, horizon_years, simulate, price, label, scenario)"
    assert caught.value.problems == [
        f"params.aa: unknown parameter {known}",
        "params.horizon_years: 0 is less than the minimum of 1",
        "params.mode: 'x' is not one of 'fast', 'exact'",
        "params.scenario: missing (this parameter is required)",
        f"params.zz: unknown parameter {known}",
    ]
    assert str(caught.value) == "; ".join(caught.value.problems)
    assert isinstance(caught.value, SegueError)


def test_workflow_without_parameters_rejects_any() -> None:
    with pytest.raises(ParameterError, match=r"params\.x: unknown parameter \(known: none\)"):
        resolve_params(workflow(), {"x": 1})
    assert resolve_params(workflow(), {}) == {}


def test_schema_is_a_valid_draft_2020_12_schema_with_every_spec() -> None:
    schema = parameters_schema(PLAN)
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["scenario"]
    properties = schema["properties"]
    assert properties["mode"] == {
        "type": "string",
        "default": "fast",
        "enum": ["fast", "exact"],
        "x-enum-labels": {"fast": "Fast"},
    }
    assert properties["horizon_years"] == {
        "type": "integer",
        "default": 10,
        "minimum": 1,
        "maximum": 50,
    }
    assert properties["simulate"] == {"type": "boolean", "default": True}
    assert properties["price"] == {"type": "number", "minimum": 0}
    assert properties["label"] == {"type": "string", "minLength": 2, "maxLength": 5}
    assert properties["scenario"] == {"type": "string", "title": "Scenario"}


def test_schema_lets_clients_validate_like_the_server() -> None:
    validator = Draft202012Validator(parameters_schema(PLAN))
    assert validator.is_valid({"scenario": "s", "price": 3})
    assert not validator.is_valid({"scenario": "s", "price": False})
    assert not validator.is_valid({"scenario": "s", "other": 1})
    assert not validator.is_valid({})
