"""Branch conditions: how variables are looked up and compared, and which step comes next."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from segue.workflows.conditions import describe, evaluate, next_step, referenced_vars
from segue.workflows.model import Condition, Step

CONDITION = TypeAdapter[Condition](Condition)

PARAMS: dict[str, Any] = {
    "region": "nl",
    "horizon": 10,
    "price": 80.5,
    "simulate": True,
    "nothing": None,
    "tags": ["a", "b"],
}
OUTPUTS: dict[str, Any] = {
    "optimise": {"cost": 1200, "summary": {"status": "optimal", "gap": 0.01}},
    "prepare": {"rows": 0},
}


def cond(data: dict[str, Any]) -> Condition:
    """A condition from its JSON form, validated like the file would be."""
    return CONDITION.validate_python(data)


@pytest.mark.parametrize(
    ("var", "op", "value", "expected"),
    [
        ("params.region", "==", "nl", True),
        ("params.region", "==", "de", False),
        ("params.region", "!=", "de", True),
        ("params.horizon", "==", 10.0, True),
        ("params.horizon", "<", 11, True),
        ("params.horizon", "<=", 10, True),
        ("params.horizon", ">", 10, False),
        ("params.horizon", ">=", 10, True),
        ("params.price", ">", 80, True),
        ("params.region", "<", "zz", True),
        ("params.region", "in", ["be", "nl"], True),
        ("params.region", "in", ["be", "de"], False),
        ("params.tags", "==", ["a", "b"], True),
        ("params.nothing", "==", None, True),
        ("outputs.optimise.cost", ">=", 1000, True),
        ("outputs.optimise.summary.status", "==", "optimal", True),
        ("outputs.optimise.summary.gap", "<", 0.05, True),
        ("outputs.prepare.rows", "==", 0, True),
    ],
)
def test_comparison_on_present_values(var: str, op: str, value: Any, expected: bool) -> None:
    assert evaluate(cond({"var": var, "op": op, "value": value}), PARAMS, OUTPUTS) is expected


@pytest.mark.parametrize(
    ("var", "op", "value"),
    [
        # booleans are not numbers, as in JSON
        ("params.simulate", "==", 1),
        ("params.simulate", "in", [1, 2]),
        ("outputs.prepare.rows", "==", False),
        # ordering values of different kinds is false, never an error
        ("params.region", "<", 5),
        ("params.horizon", ">", "5"),
        ("params.simulate", ">", 0),
        ("params.tags", "<", 3),
        ("params.nothing", "<", 1),
        # a missing variable makes every comparison false, even !=
        ("params.absent", "==", None),
        ("params.absent", "!=", "x"),
        ("params.absent", "<", 1),
        ("outputs.simulate.cost", "!=", 0),
        ("outputs.optimise.missing", "==", 1),
        ("outputs.optimise.cost.deeper", "==", 1),
        ("outputs.optimise.summary.status.x", "!=", "y"),
    ],
)
def test_comparison_that_does_not_hold(var: str, op: str, value: Any) -> None:
    assert evaluate(cond({"var": var, "op": op, "value": value}), PARAMS, OUTPUTS) is False


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"exists": "params.region"}, True),
        ({"exists": "params.nothing"}, False),
        ({"exists": "params.absent"}, False),
        ({"exists": "outputs.optimise.summary.gap"}, True),
        ({"exists": "outputs.simulate.cost"}, False),
        ({"not": {"exists": "outputs.simulate.cost"}}, True),
        ({"not": {"var": "params.absent", "op": "==", "value": 1}}, True),
        (
            {
                "all": [
                    {"var": "params.simulate", "op": "==", "value": True},
                    {"var": "params.horizon", "op": ">", "value": 5},
                ]
            },
            True,
        ),
        (
            {
                "all": [
                    {"var": "params.simulate", "op": "==", "value": True},
                    {"var": "params.horizon", "op": ">", "value": 50},
                ]
            },
            False,
        ),
        (
            {
                "any": [
                    {"var": "params.region", "op": "==", "value": "de"},
                    {"exists": "outputs.optimise.cost"},
                ]
            },
            True,
        ),
        ({"any": [{"exists": "params.absent"}, {"exists": "params.nothing"}]}, False),
    ],
)
def test_combined_conditions(data: dict[str, Any], expected: bool) -> None:
    assert evaluate(cond(data), PARAMS, OUTPUTS) is expected


def test_referenced_vars_lists_every_variable_at_any_depth() -> None:
    condition = cond(
        {
            "all": [
                {"var": "params.region", "op": "==", "value": "nl"},
                {"not": {"any": [{"exists": "outputs.optimise.cost"}]}},
                {"var": "params.region", "op": "!=", "value": "de"},
            ]
        }
    )
    assert referenced_vars(condition) == {"params.region", "outputs.optimise.cost"}


SWITCH_STEP = Step.model_validate(
    {
        "name": "optimise",
        "queue": "optimise",
        "next": {
            "branches": [
                {"when": {"var": "outputs.optimise.cost", "op": ">", "value": 1000}, "goto": None},
                {"when": {"var": "params.simulate", "op": "==", "value": True}, "goto": "simulate"},
            ],
            "default": "report",
        },
    }
)


@pytest.mark.parametrize(
    ("params", "outputs", "expected"),
    [
        ({"simulate": True}, {"optimise": {"cost": 5000}}, None),  # first branch wins
        ({"simulate": True}, {"optimise": {"cost": 10}}, "simulate"),
        ({"simulate": False}, {"optimise": {"cost": 10}}, "report"),  # default
        ({}, {}, "report"),
    ],
)
def test_next_step_of_a_switch(
    params: dict[str, Any], outputs: dict[str, Any], expected: str | None
) -> None:
    assert next_step(SWITCH_STEP, params, outputs) == expected


@pytest.mark.parametrize(("next_", "expected"), [("report", "report"), (None, None)])
def test_next_step_of_a_plain_step(next_: str | None, expected: str | None) -> None:
    step = Step(name="prepare", queue="prepare", next=next_)
    assert next_step(step, {}, {}) == expected


def test_switch_without_default_ends_the_workflow() -> None:
    step = Step.model_validate(
        {
            "name": "a",
            "queue": "a",
            "next": {"branches": [{"when": {"exists": "params.x"}, "goto": "b"}]},
        }
    )
    assert next_step(step, {}, {}) is None
    assert next_step(step, {"x": 0}, {}) == "b"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abk"), inner),
    max_leaves=8,
)


@given(
    op=st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
    actual=JSON,
    value=st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    output=st.dictionaries(st.sampled_from("abk"), JSON, max_size=3),
)
def test_evaluation_never_raises_on_any_json(op: str, actual: Any, value: Any, output: Any) -> None:
    if op in ("<", "<=", ">", ">=") and (value is None or isinstance(value, bool)):
        value = 0  # the model only lets numbers and strings be ordered against
    condition = cond({"var": "outputs.s.k", "op": op, "value": value})
    assert isinstance(evaluate(condition, {}, {"s": {**output, "k": actual}}), bool)
    membership = cond({"var": "outputs.s.k", "op": "in", "value": [value]})
    assert isinstance(evaluate(membership, {}, {"s": output}), bool)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"var": "params.simulate", "op": "==", "value": True}, "params.simulate == true"),
        (
            {"var": "params.region", "op": "in", "value": ["nl", "de"]},
            'params.region in ["nl", "de"]',
        ),
        (
            {"var": "outputs.optimise.cost", "op": "<=", "value": 1.5},
            "outputs.optimise.cost <= 1.5",
        ),
        ({"exists": "outputs.prepare.rows"}, "outputs.prepare.rows exists"),
        (
            {"not": {"var": "params.region", "op": "==", "value": "nl"}},
            'not (params.region == "nl")',
        ),
        (
            {
                "all": [
                    {"var": "params.horizon", "op": ">", "value": 5},
                    {"any": [{"exists": "params.price"}, {"not": {"exists": "params.tags"}}]},
                ]
            },
            "params.horizon > 5 and (params.price exists or not (params.tags exists))",
        ),
    ],
)
def test_describe_reads_like_the_condition(data: dict[str, Any], expected: str) -> None:
    assert describe(cond(data)) == expected
