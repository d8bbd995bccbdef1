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


# --- datetimes and durations -----------------------------------------------------------

START = "2030-01-01T00:00:00+00:00"
END = "2030-01-08T00:00:00+00:00"

TIMED = workflow(
    {
        "name": "start",
        "type": "datetime",
        "minimum": "2025-01-01T00:00:00+00:00",
        "maximum": "2040-01-01T00:00:00Z",
        "default": START,
    },
    {"name": "end", "type": "datetime"},
    {"name": "step", "type": "duration", "minimum": "PT1M", "maximum": "P1D", "default": "PT1H"},
    {"name": "pause", "type": "duration", "default": 30},
)


def timed_problems(raw: dict[str, Any]) -> list[str]:
    """The problems resolve_params reports for ``raw`` in TIMED."""
    with pytest.raises(ParameterError) as caught:
        resolve_params(TIMED, raw)
    return caught.value.problems


def test_datetime_and_duration_defaults_are_applied_as_written() -> None:
    assert resolve_params(TIMED, {}) == {"start": START, "step": "PT1H", "pause": 30}


def test_given_datetimes_and_durations_are_kept_as_given() -> None:
    raw: dict[str, Any] = {"start": "2030-01-01T02:00:00+02:00", "end": "2030-01-02T00:00:00Z"}
    raw |= {"step": 60, "pause": "P1W"}
    assert resolve_params(TIMED, raw) == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"start": "2020-01-01T00:00:00+00:00"},
            "params.start: 2020-01-01T00:00:00+00:00 is before the minimum "
            "2025-01-01T00:00:00+00:00",
        ),
        (
            {"start": "2040-01-01T00:00:01+00:00"},
            "params.start: 2040-01-01T00:00:01+00:00 is after the maximum 2040-01-01T00:00:00Z",
        ),
        ({"step": "PT30S"}, "params.step: PT30S is shorter than the minimum PT1M"),
        ({"step": 59.5}, "params.step: 59.5 s is shorter than the minimum PT1M"),
        ({"step": "P1DT1S"}, "params.step: P1DT1S is longer than the maximum P1D"),
        (
            {"start": "2030-01-01T00:00:00"},
            "params.start: '2030-01-01T00:00:00' is not a date-time with a timezone offset "
            "(ISO 8601, e.g. 2030-01-01T00:00:00+00:00)",
        ),
        (
            {"end": "2030-02-30T00:00:00Z"},
            "params.end: '2030-02-30T00:00:00Z' is not a date-time with a timezone offset "
            "(ISO 8601, e.g. 2030-01-01T00:00:00+00:00); day is out of range for month",
        ),
        (
            {"end": 1893456000},
            "params.end: 1893456000 is not a date-time with a timezone offset "
            "(ISO 8601, e.g. 2030-01-01T00:00:00+00:00)",
        ),
        (
            {"pause": "1 hour"},
            "params.pause: '1 hour' is not a duration "
            "(ISO 8601 like PT1H30M or P7D, or a number of seconds)",
        ),
        (
            {"pause": "P1Y"},
            "params.pause: 'P1Y' is not a duration (ISO 8601 like PT1H30M or P7D, or a number "
            "of seconds); years and months have no fixed length: give weeks, days, hours, "
            "minutes or seconds",
        ),
        (
            {"pause": -5},
            "params.pause: -5 is not a duration "
            "(ISO 8601 like PT1H30M or P7D, or a number of seconds); it is negative",
        ),
        (
            {"pause": True},
            "params.pause: True is not a duration "
            "(ISO 8601 like PT1H30M or P7D, or a number of seconds)",
        ),
        (
            {"pause": "P99999999999D"},
            "params.pause: 'P99999999999D' is not a duration (ISO 8601 like PT1H30M or P7D, "
            "or a number of seconds); it is not shorter than 999999999 days",
        ),
    ],
)
def test_each_kind_of_invalid_time_value_is_named_precisely(
    raw: dict[str, Any], expected: str
) -> None:
    assert timed_problems(raw) == [expected]


def test_bounds_compare_moments_and_lengths_not_text() -> None:
    # 23:00 at -02:00 is 01:00 UTC, after the minimum although its text sorts before it.
    early_text = "2024-12-31T23:00:00-02:00"
    assert resolve_params(TIMED, {"start": early_text})["start"] == early_text
    assert resolve_params(TIMED, {"step": "PT1440M"})["step"] == "PT1440M"  # = P1D
    assert timed_problems({"start": "2025-01-01T00:30:00+01:00"}) == [
        "params.start: 2025-01-01T00:30:00+01:00 is before the minimum 2025-01-01T00:00:00+00:00"
    ]


def test_schema_of_datetimes_and_durations() -> None:
    schema = parameters_schema(TIMED)
    Draft202012Validator.check_schema(schema)
    start, step = schema["properties"]["start"], schema["properties"]["step"]
    assert start["type"] == "string"
    assert start["format"] == "date-time"
    assert (start["x-minimum"], start["x-maximum"]) == (
        "2025-01-01T00:00:00+00:00",
        "2040-01-01T00:00:00Z",
    )
    assert step["type"] == ["string", "number"]
    assert step["format"] == "duration"
    assert (step["default"], step["x-minimum"], step["x-maximum"]) == ("PT1H", "PT1M", "P1D")


def test_schema_lets_clients_check_time_formats_without_a_format_checker() -> None:
    validator = Draft202012Validator(parameters_schema(TIMED))
    assert validator.is_valid({"start": "2030-01-01T00:00:00Z", "step": 60, "pause": "PT1H"})
    assert not validator.is_valid({"start": "2030-01-01"})
    assert not validator.is_valid({"pause": "P1Y"})
    assert not validator.is_valid({"pause": -1})
    assert not validator.is_valid({"pause": False})


# --- constraints between parameters ----------------------------------------------------


def related(relation: str, kind: str = "integer") -> Workflow:
    """``a`` must stand in ``relation`` to ``b``, both of type ``kind``."""
    return workflow(
        {"name": "a", "type": kind, "constraints": [{"other": "b", "relation": relation}]},
        {"name": "b", "type": kind},
    )


@pytest.mark.parametrize(
    ("relation", "holds", "fails", "expected"),
    [
        ("greater", (6, 5), (5, 5), "params.a: must be greater than params.b (5 ≤ 5)"),
        (
            "greater_or_eq",
            (5, 5),
            (4, 5),
            "params.a: must be greater than or equal to params.b (4 < 5)",
        ),
        ("smaller", (4, 5), (5, 5), "params.a: must be smaller than params.b (5 ≥ 5)"),
        (
            "smaller_or_eq",
            (5, 5),
            (6, 5),
            "params.a: must be smaller than or equal to params.b (6 > 5)",
        ),
        ("eq", (5, 5), (4, 5), "params.a: must be equal to params.b (4 ≠ 5)"),
    ],
)
def test_each_relation(
    relation: str, holds: tuple[int, int], fails: tuple[int, int], expected: str
) -> None:
    flow = related(relation)
    assert resolve_params(flow, dict(zip("ab", holds, strict=True))) == dict(
        zip("ab", holds, strict=True)
    )
    with pytest.raises(ParameterError) as caught:
        resolve_params(flow, dict(zip("ab", fails, strict=True)))
    assert caught.value.problems == [expected]


def test_integers_and_floats_compare() -> None:
    flow = workflow(
        {"name": "a", "type": "float", "constraints": [{"other": "b", "relation": "greater"}]},
        {"name": "b", "type": "integer"},
    )
    assert resolve_params(flow, {"a": 2.5, "b": 2}) == {"a": 2.5, "b": 2}
    with pytest.raises(ParameterError, match=r"params\.a: must be greater than params\.b"):
        resolve_params(flow, {"a": 1.5, "b": 2})


def test_datetime_relation_compares_moments_across_offsets() -> None:
    flow = related("greater", "datetime")
    later = {"a": "2030-01-01T01:00:00+02:00", "b": "2029-12-31T22:00:00Z"}  # 23:00 vs 22:00 UTC
    assert resolve_params(flow, later) == later
    with pytest.raises(ParameterError) as caught:
        resolve_params(flow, {"a": START, "b": START})
    assert caught.value.problems == [f"params.a: must be greater than params.b ({START} ≤ {START})"]


def test_duration_relation_compares_lengths_in_either_form() -> None:
    flow = related("greater_or_eq", "duration")
    assert resolve_params(flow, {"a": "PT1H", "b": 3600}) == {"a": "PT1H", "b": 3600}
    with pytest.raises(ParameterError) as caught:
        resolve_params(flow, {"a": 60, "b": "PT1H"})
    assert caught.value.problems == [
        "params.a: must be greater than or equal to params.b (60 s < PT1H)"
    ]


def test_constraints_are_checked_after_defaults_apply() -> None:
    flow = workflow(
        {"name": "start", "type": "datetime", "default": START},
        {
            "name": "end",
            "type": "datetime",
            "default": END,
            "constraints": [{"other": "start", "relation": "greater"}],
        },
    )
    assert resolve_params(flow, {}) == {"start": START, "end": END}
    with pytest.raises(ParameterError) as caught:
        resolve_params(flow, {"start": "2031-01-01T00:00:00+00:00"})
    assert caught.value.problems == [
        f"params.end: must be greater than params.start ({END} ≤ 2031-01-01T00:00:00+00:00)"
    ]


def test_a_constraint_without_both_values_is_not_checked() -> None:
    assert resolve_params(related("greater"), {"a": 1}) == {"a": 1}
    assert resolve_params(related("greater"), {"b": 1}) == {"b": 1}


def test_an_invalid_value_is_reported_once_not_again_by_its_constraint() -> None:
    flow = related("greater", "datetime")
    with pytest.raises(ParameterError) as caught:
        resolve_params(flow, {"a": "soon", "b": START})
    assert caught.value.problems == [
        "params.a: 'soon' is not a date-time with a timezone offset "
        "(ISO 8601, e.g. 2030-01-01T00:00:00+00:00)"
    ]


def test_constraints_reach_the_schema_for_uis() -> None:
    schema = parameters_schema(related("smaller", "duration"))
    assert schema["properties"]["a"]["x-constraints"] == [{"other": "b", "relation": "smaller"}]
    assert "x-constraints" not in schema["properties"]["b"]


# --- lists -----------------------------------------------------------------------------

CASES = workflow(
    {
        "name": "cases",
        "type": "list",
        "items": {"type": "integer"},
        "min_items": 1,
        "max_items": 3,
        "default": [1, 2],
    }
)


def test_a_list_parameter_compiles_to_a_json_schema_array() -> None:
    schema = parameters_schema(CASES)["properties"]["cases"]
    assert schema == {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 1,
        "maxItems": 3,
        "default": [1, 2],
    }
    Draft202012Validator.check_schema(schema)


def test_a_list_parameter_takes_its_default_or_a_given_list() -> None:
    assert resolve_params(CASES, {}) == {"cases": [1, 2]}
    assert resolve_params(CASES, {"cases": [3.0, 4]}) == {"cases": [3, 4]}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "params.cases: has 0 items, fewer than the minimum of 1"),
        ([1, 2, 3, 4], "params.cases: has 4 items, more than the maximum of 3"),
        ([1, "two"], "params.cases.1: 'two' is not an integer"),
        ("1,2", "params.cases: '1,2' is not a list"),
    ],
)
def test_a_list_parameter_refuses_what_does_not_fit(value: Any, problem: str) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_params(CASES, {"cases": value})
    assert caught.value.problems == [problem]
