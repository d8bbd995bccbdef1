"""Branch conditions: evaluate them on a job's params and step outputs.

A variable is ``params.<name>`` or ``outputs.<step>.<key>[.<key>...]`` (a lookup
in the output of a step that succeeded). Evaluation never raises: a missing
variable makes a comparison false, and so does ordering values of different kinds
(``"a" < 1``). Values compare as JSON values: ``true`` is not ``1``, ``1`` is ``1.0``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any, assert_never

from segue.workflows.model import (
    AllOf,
    AnyOf,
    Comparison,
    ComparisonOp,
    Condition,
    Exists,
    Not,
    Step,
)

MISSING: Any = object()
"""What a lookup of an absent variable gives (``None`` is a value: JSON null)."""
_MISSING = MISSING

_ORDERINGS: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def evaluate(condition: Condition, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> bool:
    """Whether ``condition`` holds for a job with these params and step outputs."""
    match condition:
        case Comparison(var=var, op=op, value=value):
            actual = _lookup(var, params, outputs)
            return actual is not _MISSING and _compare(op, actual, value)
        case AllOf():
            return all(evaluate(part, params, outputs) for part in condition.all)
        case AnyOf():
            return any(evaluate(part, params, outputs) for part in condition.any)
        case Not():
            return not evaluate(condition.not_, params, outputs)
        case Exists():
            found = _lookup(condition.exists, params, outputs)
            return found is not _MISSING and found is not None
        case _:
            assert_never(condition)


def next_step(step: Step, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> str | None:
    """The step to run after ``step`` succeeded; None when the workflow ends there.

    For a switch, the first branch whose condition holds wins, else its ``default``.
    """
    target = step.next
    if target is None or isinstance(target, str):
        return target
    for branch in target.branches:
        if evaluate(branch.when, params, outputs):
            return branch.goto
    return target.default


def lookup(var: str, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    """The value of ``var`` (``params.<name>``, ``outputs.<step>[.<key>...]``), or
    :data:`MISSING` when it is absent."""
    return _lookup(var, params, outputs)


def why_missing(var: str, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> str:
    """Where the lookup of a missing ``var`` stops, in words (empty when it is present)."""
    scope, _, rest = var.partition(".")
    if scope == "params":
        return "" if rest in params else f"the job has no parameter {rest!r}"
    first, *keys = rest.split(".")
    if first not in outputs:
        if first == "_failure":
            return "there is no failure: outputs._failure is set only for an on_failure step"
        return f"step {first!r} has no output"
    node, path = outputs[first], f"outputs.{first}"
    for key in keys:
        if not isinstance(node, Mapping):
            return f"{path} is {json_kind(node)}, not an object"
        if key not in node:
            return f"{path} has no key {key!r}"
        node, path = node[key], f"{path}.{key}"
    return ""


def json_kind(value: Any) -> str:
    """What a JSON value is, in words: ``a list``, ``a string``, ``null``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _lookup(var: str, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    """The value of ``var``, or ``_MISSING`` when it is absent."""
    scope, _, rest = var.partition(".")
    if scope == "params":
        return params.get(rest, _MISSING)
    if scope != "outputs":
        return _MISSING
    node: Any = outputs
    for key in rest.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def walk_vars(condition: Condition, path: str = "") -> Iterator[tuple[str, str]]:
    """Every variable ``condition`` reads, as (JSON path below ``path``, variable)."""
    match condition:
        case Comparison():
            yield f"{path}.var", condition.var
        case AllOf():
            for index, part in enumerate(condition.all):
                yield from walk_vars(part, f"{path}.all[{index}]")
        case AnyOf():
            for index, part in enumerate(condition.any):
                yield from walk_vars(part, f"{path}.any[{index}]")
        case Not():
            yield from walk_vars(condition.not_, f"{path}.not")
        case Exists():
            yield f"{path}.exists", condition.exists
        case _:
            assert_never(condition)


def referenced_vars(condition: Condition) -> set[str]:
    """The variables ``condition`` reads, e.g. ``{"params.simulate"}``."""
    return {var for _, var in walk_vars(condition)}


def _compare(op: ComparisonOp, actual: Any, value: Any) -> bool:
    """``actual op value`` with JSON semantics; False for values that do not compare."""
    if op == "==":
        return _same(actual, value)
    if op == "!=":
        return not _same(actual, value)
    if op == "in":
        return isinstance(value, list) and any(_same(actual, item) for item in value)
    comparable = (_is_number(actual) and _is_number(value)) or (
        isinstance(actual, str) and isinstance(value, str)
    )
    return comparable and _ORDERINGS[op](actual, value)


def _same(left: Any, right: Any) -> bool:
    """JSON equality: like ``==`` except that a boolean never equals a number."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return bool(left == right)


def _is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe(condition: Condition) -> str:
    """``condition`` as one line a person reads, e.g. ``params.simulate == true``.

    Values are JSON; ``all`` joins with ``and``, ``any`` with ``or``; what ``not``
    negates, and a part of ``and``/``or`` that holds several, is in parentheses.
    """
    match condition:
        case Comparison(var=var, op=op, value=value):
            return f"{var} {op} {json.dumps(value)}"
        case AllOf():
            return " and ".join(_part(part) for part in condition.all)
        case AnyOf():
            return " or ".join(_part(part) for part in condition.any)
        case Not():
            return f"not ({describe(condition.not_)})"
        case Exists():
            return f"{condition.exists} exists"
        case _:
            assert_never(condition)


def _part(condition: Condition) -> str:
    """A part of ``and``/``or``: in parentheses when it is an ``and``/``or`` itself."""
    text = describe(condition)
    return f"({text})" if isinstance(condition, AllOf | AnyOf) else text
