"""Job parameters: compile a workflow's parameter specs to JSON Schema, check a
submission's params with :mod:`jsonschema` and apply the defaults.

The server calls :func:`resolve_params` before it accepts a job and stores the
result with the job, so every job records the exact params it ran with.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from segue.errors import SegueError
from segue.workflows.model import (
    FloatParameter,
    IntegerParameter,
    Parameter,
    StringParameter,
    Workflow,
)

_JSON_TYPES = {"string": "string", "boolean": "boolean", "integer": "integer", "float": "number"}
_TYPE_WORDS = {
    "string": "a string",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "object": "an object",
}


class ParameterError(SegueError):
    """A job's params do not fit its workflow; ``problems`` says each way they do not."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parameter_schema(parameter: Parameter) -> dict[str, Any]:
    """The JSON Schema of one parameter's value (with its title, default and bounds)."""
    schema: dict[str, Any] = {"type": _JSON_TYPES[parameter.type]}
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
    Raises :class:`ParameterError` listing every problem, sorted.
    """
    # Building the validator takes microseconds; the server checks a job once, so a
    # cache would only add state to keep in step with the file.
    validator = Draft202012Validator(parameters_schema(workflow))
    known = [param.name for param in workflow.parameters]
    problems = sorted(
        {problem for error in validator.iter_errors(raw) for problem in _describe(error, known)}
    )
    if problems:
        raise ParameterError(problems)
    resolved: dict[str, Any] = {}
    for param in workflow.parameters:
        value = raw.get(param.name, param.default)
        if isinstance(param, IntegerParameter) and isinstance(value, float):
            value = int(value)
        if value is not None:
            resolved[param.name] = value
    return resolved


def default_problems(parameter: Parameter) -> list[str]:
    """Why the parameter's own default breaks its bounds or options (empty: it does not)."""
    if parameter.default is None:
        return []
    validator = Draft202012Validator(parameter_schema(parameter))
    return sorted(_message(error) for error in validator.iter_errors(parameter.default))


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
    match error.validator:
        case "enum" if isinstance(rule, list):
            return f"{value!r} is not one of {', '.join(map(repr, rule))}"
        case "type" if isinstance(rule, str):
            return f"{value!r} is not {_TYPE_WORDS.get(rule, repr(rule))}"
        case "minLength":
            return f"{value!r} is shorter than the minimum length of {rule}"
        case "maxLength":
            return f"{value!r} is longer than the maximum length of {rule}"
        case _:
            return error.message
