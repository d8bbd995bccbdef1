"""Job parameters: compile a workflow's parameter specs to JSON Schema, check a
submission's params with :mod:`jsonschema` and apply the defaults.

The server calls :func:`resolve_params` before it accepts a job and stores the
result with the job, so every job records the exact params it ran with.

JSON Schema checks each value's type, format, enum options and numeric bounds.
What it cannot say is checked here, after the defaults are applied: the bounds
of datetimes and durations (``minimum`` does not work on strings; the schema
carries them as ``x-minimum``/``x-maximum`` for UIs) and the ``constraints``
between parameters (carried as ``x-constraints``). Datetimes and durations stay
as the submitter wrote them; only comparisons read them as moments and lengths.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from segue.errors import SegueError
from segue.workflows.model import (
    Constraint,
    DatetimeParameter,
    DurationParameter,
    FloatParameter,
    IntegerParameter,
    ListParameter,
    Parameter,
    Relation,
    StringParameter,
    Workflow,
)
from segue.workflows.timevalues import (
    DATETIME_PATTERN,
    DURATION_PATTERN,
    TimeValueError,
    is_datetime,
    parse_datetime,
    parse_duration,
    show_duration,
)

_JSON_TYPES: Mapping[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "datetime": {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN},
    "duration": {
        # "minimum" applies to the number of seconds only, "pattern" to the text only.
        "type": ["string", "number"],
        "format": "duration",
        "pattern": DURATION_PATTERN,
        "minimum": 0,
    },
    "list": {"type": "array"},
}
_TYPE_WORDS = {
    "string": "a string",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "object": "an object",
    "array": "a list",
}
_ORDER_KINDS = {
    "integer": "number",
    "float": "number",
    "datetime": "datetime",
    "duration": "duration",
}
"""Parameter type -> what its values are; only values of one kind compare."""

_RELATIONS: Mapping[Relation, tuple[str, Callable[[Any, Any], bool], str]] = {
    "greater": ("greater than", operator.gt, "≤"),
    "greater_or_eq": ("greater than or equal to", operator.ge, "<"),
    "smaller": ("smaller than", operator.lt, "≥"),
    "smaller_or_eq": ("smaller than or equal to", operator.le, ">"),
    "eq": ("equal to", operator.eq, "≠"),
}
"""Relation -> (words, test, what holds instead when the test fails)."""


class Ordered(Protocol):
    """A value with an order: a number, a datetime or a timedelta."""

    def __lt__(self, other: Any, /) -> bool: ...
    def __le__(self, other: Any, /) -> bool: ...
    def __gt__(self, other: Any, /) -> bool: ...
    def __ge__(self, other: Any, /) -> bool: ...


class ParameterError(SegueError):
    """A job's params do not fit its workflow; ``problems`` says each way they do not."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parameter_schema(parameter: Parameter) -> dict[str, Any]:
    """The JSON Schema of one parameter's value (with its title, default and bounds)."""
    schema: dict[str, Any] = dict(_JSON_TYPES[parameter.type])
    annotations = {
        "title": parameter.title,
        "description": parameter.description,
        "default": parameter.default,
    }
    schema.update({key: value for key, value in annotations.items() if value is not None})
    if isinstance(parameter, StringParameter):
        schema.update(_string_keywords(parameter))
    elif isinstance(parameter, IntegerParameter | FloatParameter):
        bounds = {"minimum": parameter.minimum, "maximum": parameter.maximum}
        schema.update({key: value for key, value in bounds.items() if value is not None})
    elif isinstance(parameter, ListParameter):
        schema.update(_list_keywords(parameter))
    elif isinstance(parameter, DatetimeParameter | DurationParameter):
        # Not validation keywords: JSON Schema cannot bound strings; the server checks them.
        annotated = {"x-minimum": parameter.minimum, "x-maximum": parameter.maximum}
        schema.update({key: value for key, value in annotated.items() if value is not None})
    if parameter.constraints:
        schema["x-constraints"] = [c.model_dump() for c in parameter.constraints]
    return schema


def _string_keywords(parameter: StringParameter) -> dict[str, Any]:
    """``enum`` (plus labels for UIs), ``minLength`` and ``maxLength`` of a string."""
    keywords: dict[str, Any] = {}
    if parameter.enum is not None:
        keywords["enum"] = [option.value for option in parameter.enum]
        labels = {option.value: option.label for option in parameter.enum if option.label}
        if labels:
            # Not a validation keyword: JSON Schema has no labels for enum values.
            keywords["x-enum-labels"] = labels
    if parameter.min_length is not None:
        keywords["minLength"] = parameter.min_length
    if parameter.max_length is not None:
        keywords["maxLength"] = parameter.max_length
    return keywords


def _list_keywords(parameter: ListParameter) -> dict[str, Any]:
    """``items`` (the type of each item), ``minItems`` and ``maxItems`` of a list."""
    keywords: dict[str, Any] = {"items": dict(_JSON_TYPES[parameter.items.type])}
    if parameter.min_items is not None:
        keywords["minItems"] = parameter.min_items
    if parameter.max_items is not None:
        keywords["maxItems"] = parameter.max_items
    return keywords


def parameters_schema(workflow: Workflow) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the params of a job of ``workflow``."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Parameters of workflow {workflow.name}",
        "type": "object",
        "properties": {param.name: parameter_schema(param) for param in workflow.parameters},
        "additionalProperties": False,
    }
    if workflow.description:
        schema["description"] = workflow.description
    required = [param.name for param in workflow.parameters if param.required]
    if required:
        schema["required"] = required
    return schema


def resolve_params(workflow: Workflow, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``raw`` against the workflow's parameters and fill in the defaults.

    Returns every parameter that has a value or a default, in declaration order.
    An integral float given for an integer parameter (``3.0``) becomes an int.
    Bounds of datetimes and durations and the constraints between parameters are
    checked on the values with defaults applied. Raises :class:`ParameterError`
    listing every problem, sorted.
    """
    # Building the validator takes microseconds; the server checks a job once, so a
    # cache would only add state to keep in step with the file.
    validator = _validator(parameters_schema(workflow))
    known = [param.name for param in workflow.parameters]
    errors = list(validator.iter_errors(raw))
    problems = {problem for error in errors for problem in _describe(error, known)}
    invalid = {str(error.absolute_path[0]) for error in errors if error.absolute_path}
    resolved = _with_defaults(workflow, raw)
    valid = {name: value for name, value in resolved.items() if name not in invalid}
    problems.update(order_problems(workflow.parameters, valid))
    if problems:
        raise ParameterError(sorted(problems))
    return resolved


def _with_defaults(workflow: Workflow, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The value or else the default of each parameter that has one, in declaration order."""
    resolved: dict[str, Any] = {}
    for param in workflow.parameters:
        value = raw.get(param.name, param.default)
        if isinstance(param, IntegerParameter) and isinstance(value, float):
            value = int(value)
        if isinstance(param, ListParameter) and param.items.type == "integer":
            value = _integral_items(value)
        if value is not None:
            resolved[param.name] = value
    return resolved


def _integral_items(value: Any) -> Any:
    """A list with each integral float (``3.0``) as an int; anything else as it is."""
    if not isinstance(value, list):
        return value
    return [int(item) if isinstance(item, float) and item.is_integer() else item for item in value]


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator that also checks the ``date-time`` format, as :func:`parse_datetime` reads it.

    jsonschema's own date-time check needs the ``rfc3339-validator`` package and
    would accept what ``datetime.fromisoformat`` refuses (e.g. leap seconds).
    """
    checker = FormatChecker(formats=())
    checker.checks("date-time")(is_datetime)
    return Draft202012Validator(schema, format_checker=checker)


def default_problems(parameter: Parameter) -> list[str]:
    """Why the parameter's own default breaks its bounds or options (empty: it does not)."""
    if parameter.default is None:
        return []
    validator = _validator(parameter_schema(parameter))
    problems = sorted({_message(error) for error in validator.iter_errors(parameter.default)})
    if problems or not isinstance(parameter, DatetimeParameter | DurationParameter):
        return problems
    bound = _bound_problem(parameter, parameter.default)
    return [] if bound is None else [bound]


def order_problems(parameters: Sequence[Parameter], values: Mapping[str, Any]) -> Iterator[str]:
    """``params.<name>: reason`` for each datetime or duration out of bounds and each
    constraint that ``values`` (valid types and formats, defaults applied) break."""
    by_name = {param.name: param for param in parameters}
    for param in parameters:
        if param.name not in values:
            continue
        if isinstance(param, DatetimeParameter | DurationParameter):
            bound = _bound_problem(param, values[param.name])
            if bound is not None:
                yield f"params.{param.name}: {bound}"
        for constraint in param.constraints:
            broken = constraint_problem(param, constraint, by_name, values)
            if broken is not None:
                yield f"params.{param.name}: {broken}"


def comparable(param: Parameter, other: Parameter) -> bool:
    """Whether values of the two parameters compare (numbers, datetimes or durations alike)."""
    kind = _ORDER_KINDS.get(param.type)
    return kind is not None and kind == _ORDER_KINDS.get(other.type)


def constraint_problem(
    param: Parameter,
    constraint: Constraint,
    by_name: Mapping[str, Parameter],
    values: Mapping[str, Any],
) -> str | None:
    """How ``values`` break ``param``'s constraint, e.g. ``must be greater than
    params.start (5 ≤ 7)``; None when they keep it or a value is missing."""
    other = by_name.get(constraint.other)
    if other is None or not comparable(param, other):
        return None  # lint reports the constraint
    if param.name not in values or other.name not in values:
        return None
    mine, theirs = values[param.name], values[other.name]
    words, holds, instead = _RELATIONS[constraint.relation]
    try:
        if holds(order_key(param, mine), order_key(other, theirs)):
            return None
    except TimeValueError:
        return None  # the value itself is reported
    shown = f"{show_value(param, mine)} {instead} {show_value(other, theirs)}"
    return f"must be {words} params.{other.name} ({shown})"


def describe_constraint(constraint: Constraint) -> str:
    """``constraint`` in words, e.g. ``greater than start_time``."""
    return f"{_RELATIONS[constraint.relation][0]} {constraint.other}"


def order_key(param: Parameter, value: Any) -> Ordered:
    """What ``value`` stands for in comparisons: a datetime, a timedelta or the number."""
    if isinstance(param, DatetimeParameter):
        return parse_datetime(value)
    if isinstance(param, DurationParameter):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise TypeError(f"parameter {param.name!r} of type {param.type} has no order")


def show_value(param: Parameter, value: Any) -> str:
    """A value in a message: datetimes as written, durations as ``PT1H`` or ``90 s``."""
    if isinstance(param, DatetimeParameter) and isinstance(value, str):
        return value
    if isinstance(param, DurationParameter):
        return show_duration(value)
    return json.dumps(value)


def _bound_problem(param: DatetimeParameter | DurationParameter, value: Any) -> str | None:
    """Why a datetime or duration is outside its bounds or no such value (None: it is fine)."""
    below, above = (
        ("before", "after")
        if isinstance(param, DatetimeParameter)
        else ("shorter than", "longer than")
    )
    try:
        key = order_key(param, value)
    except TimeValueError as exc:
        return exc.describe(value)
    shown = show_value(param, value)
    if param.minimum is not None and key < order_key(param, param.minimum):
        return f"{shown} is {below} the minimum {show_value(param, param.minimum)}"
    if param.maximum is not None and key > order_key(param, param.maximum):
        return f"{shown} is {above} the maximum {show_value(param, param.maximum)}"
    return None


def _describe(error: ValidationError, known: list[str]) -> Iterator[str]:
    """The problems one jsonschema error stands for, each as ``params.<name>: reason``."""
    where = ".".join(["params", *(str(part) for part in error.absolute_path)])
    instance, rule = error.instance, error.validator_value
    if error.validator == "required" and isinstance(instance, Mapping) and isinstance(rule, list):
        for name in rule:
            if name not in instance:
                yield f"params.{name}: missing (this parameter is required)"
    elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
        listed = ", ".join(known) if known else "none"
        for name in instance:
            if name not in known:
                yield f"params.{name}: unknown parameter (known: {listed})"
    else:
        yield f"{where}: {_message(error)}"


def _message(error: ValidationError) -> str:
    """A reason that names the offending value and the rule it breaks."""
    value, rule = error.instance, error.validator_value
    fmt = error.schema.get("format") if isinstance(error.schema, Mapping) else None
    if fmt in ("date-time", "duration"):
        return _time_message(fmt, value)
    match error.validator:
        case "enum" if isinstance(rule, list):
            return f"{value!r} is not one of {', '.join(map(repr, rule))}"
        case "type" if isinstance(rule, str):
            return f"{value!r} is not {_TYPE_WORDS.get(rule, repr(rule))}"
        case "minLength":
            return f"{value!r} is shorter than the minimum length of {rule}"
        case "maxLength":
            return f"{value!r} is longer than the maximum length of {rule}"
        case "minItems" if isinstance(value, list):
            return f"{_items(len(value))}, fewer than the minimum of {rule}"
        case "maxItems" if isinstance(value, list):
            return f"{_items(len(value))}, more than the maximum of {rule}"
        case _:
            return error.message


def _items(count: int) -> str:
    """``has 1 item`` / ``has 3 items``."""
    return f"has {count} item{'' if count == 1 else 's'}"


def _time_message(fmt: str, value: Any) -> str:
    """Why ``value`` is no datetime (``fmt`` date-time) or duration, in one wording for
    every rule it breaks (type, pattern, format, a negative number)."""
    parse = parse_datetime if fmt == "date-time" else parse_duration
    try:
        parse(value)
    except TimeValueError as exc:
        return exc.describe(value)
    return f"{value!r} is not a valid {fmt}"
