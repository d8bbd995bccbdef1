"""The legacy OMOTES workflow file: a top-level JSON array of workflow types.

::

    [
      {
        "workflow_type_name": "simulator",
        "workflow_type_description_name": "Conceptual Design - Simulation",
        "workflow_parameters": [
          {"parameter_type": "datetime", "key_name": "start_time", "default": "..."},
          {"parameter_type": "datetime", "key_name": "end_time",
           "constraints": [{"other_key_name": "start_time", "relation": "greater"}]},
          {"parameter_type": "string", "key_name": "mode",
           "enum_options": [{"key_name": "fast", "display_name": "Fast"}]}
        ]
      }
    ]

Each workflow type becomes a one-step workflow: the workflow, its only step and
the step's queue are all named by ``workflow_type_name``, so the workers that
served the legacy system serve it unchanged. ``workflow_type_description_name``
becomes the description. A parameter has ``parameter_type`` (string, integer,
float, boolean, datetime or duration), ``key_name``, ``title``, ``description``,
``default``, ``minimum``, ``maximum``, ``enum_options`` (``key_name`` and
``display_name``) and ``constraints`` (``other_key_name`` and ``relation``).

Datetimes: OMOTES reads them with Python's ``datetime.fromisoformat`` and its
files give them without a timezone offset (``"2030-12-31T23:00:00"``), which
format 1 refuses. A legacy file's datetime ``default``/``minimum``/``maximum``
that format 1 would refuse but ``fromisoformat`` reads is therefore rewritten
as that moment in ISO 8601 with its offset, a value without an offset being
read as **UTC** (``"2030-12-31T23:00:00+00:00"``). Values that already have
the format-1 form are kept as written.

:func:`from_legacy` renames the keys to format version 1, which then goes through
the model and :func:`~segue.workflows.lint.lint` like any file;
:func:`legacy_problems` turns the paths of what they find back into paths of the
legacy file (``$[2].workflow_parameters[0].parameter_type``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from segue.workflows.lint import Problem
from segue.workflows.timevalues import is_datetime

_WORKFLOW_KEYS = {
    "workflow_type_name": "name",
    "workflow_type_description_name": "description",
    "workflow_parameters": "parameters",
}
_PARAMETER_KEYS = {
    "parameter_type": "type",
    "key_name": "name",
    "enum_options": "enum",
} | {key: key for key in ("title", "description", "default", "minimum", "maximum", "constraints")}
_OPTION_KEYS = {"key_name": "value", "display_name": "label"}
_CONSTRAINT_KEYS = {"other_key_name": "other", "relation": "relation"}

_STEPS = re.compile(r"^\$\.workflows\[(\d+)\]\.steps\b.*$")
_PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_STEPS, r"$[\1].workflow_type_name"),
    (re.compile(r"^\$\.workflows\[(\d+)\]\.name$"), r"$[\1].workflow_type_name"),
    (re.compile(r"^\$\.workflows\[(\d+)\]\.description$"), r"$[\1].workflow_type_description_name"),
    (re.compile(r"^\$\.workflows"), "$"),
    (re.compile(r"\.parameters\b"), ".workflow_parameters"),
    (re.compile(r"(\.workflow_parameters\[\d+\])\.name$"), r"\1.key_name"),
    (re.compile(r"(\.workflow_parameters\[\d+\])\.type$"), r"\1.parameter_type"),
    (re.compile(r"\.enum(\[\d+\])\.value$"), r".enum_options\1.key_name"),
    (re.compile(r"\.enum(\[\d+\])\.label$"), r".enum_options\1.display_name"),
    (re.compile(r"\.enum\b"), ".enum_options"),
    (re.compile(r"(\.constraints\[\d+\])\.other$"), r"\1.other_key_name"),
)
"""Format-1 path -> legacy path, applied in order (each rule sees the previous result)."""

_PATH_IN_REASON = re.compile(r"\$\.workflows[^\s),]*")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def from_legacy(items: list[Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The format-1 file the legacy array ``items`` stands for, and a problem for each
    key the legacy format does not have (those keys are left out of the result)."""
    problems: list[Problem] = []
    workflows = [_workflow(item, f"$[{index}]", problems) for index, item in enumerate(items)]
    return {"format_version": 1, "workflows": workflows}, problems


def legacy_problems(problems: Iterable[Problem]) -> list[Problem]:
    """``problems`` of the format-1 file made by :func:`from_legacy`, with legacy paths.

    A problem of the generated step stands at ``workflow_type_name`` and is left out
    when the name has a problem of its own (the step only repeats it).
    """
    own: list[Problem] = []
    derived: list[Problem] = []
    for problem in problems:
        translated = Problem(legacy_path(problem.path), _legacy_reason(problem.reason))
        (derived if _STEPS.match(problem.path) else own).append(translated)
    paths = {problem.path for problem in own}
    kept = [problem for problem in derived if problem.path not in paths]
    return [*own, *dict.fromkeys(kept)]


def legacy_path(path: str) -> str:
    """``$.workflows[2].parameters[0].type`` -> ``$[2].workflow_parameters[0].parameter_type``."""
    for pattern, replacement in _PATHS:
        path = pattern.sub(replacement, path)
    return path


def _legacy_reason(reason: str) -> str:
    """A reason with the format-1 paths it names (``also at ...``) made legacy paths."""
    return _PATH_IN_REASON.sub(lambda match: legacy_path(match.group()), reason)


def _workflow(item: Any, path: str, problems: list[Problem]) -> Any:
    """One workflow type as a format-1 workflow with one step (as is unless an object)."""
    if not isinstance(item, Mapping):
        return item
    workflow = _renamed(item, _WORKFLOW_KEYS, path, problems)
    if "workflow_type_description_name" not in item:
        problems.append(
            Problem(f"{path}.workflow_type_description_name", "required key is missing")
        )
    if "workflow_type_name" in item:
        name = item["workflow_type_name"]
        workflow["steps"] = [{"name": name, "queue": name}]
    parameters = workflow.get("parameters")
    if isinstance(parameters, list):
        workflow["parameters"] = [
            _parameter(param, f"{path}.workflow_parameters[{index}]", problems)
            for index, param in enumerate(parameters)
        ]
    return workflow


def _parameter(item: Any, path: str, problems: list[Problem]) -> Any:
    """One workflow parameter with format-1 keys, its options and constraints too."""
    if not isinstance(item, Mapping):
        return item
    param = _renamed(item, _PARAMETER_KEYS, path, problems)
    if param.get("type") == "datetime":
        for key in ("default", "minimum", "maximum"):
            if key in param:
                param[key] = legacy_datetime(param[key])
    for key, legacy_key, keys in (
        ("enum", "enum_options", _OPTION_KEYS),
        ("constraints", "constraints", _CONSTRAINT_KEYS),
    ):
        children = param.get(key)
        if isinstance(children, list):
            param[key] = [
                _renamed(child, keys, f"{path}.{legacy_key}[{index}]", problems)
                if isinstance(child, Mapping)
                else child
                for index, child in enumerate(children)
            ]
    return param


def legacy_datetime(value: Any) -> Any:
    """A datetime of a legacy file in the format-1 form: ISO 8601 with an offset, UTC
    when it has none (``2030-12-31T23:00:00`` -> ``2030-12-31T23:00:00+00:00``).

    ``value`` is returned as it is when it already has that form, or when
    ``datetime.fromisoformat`` (how OMOTES reads it) cannot read it either:
    the model then says what is wrong with it.
    """
    if not isinstance(value, str) or is_datetime(value):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _renamed(
    item: Mapping[str, Any], keys: Mapping[str, str], path: str, problems: list[Problem]
) -> dict[str, Any]:
    """``item`` with its keys renamed by ``keys``; any other key is a problem."""
    renamed: dict[str, Any] = {}
    for key, value in item.items():
        if key in keys:
            renamed[keys[key]] = value
        else:
            problems.append(Problem(_key_path(path, key), "unknown key (not allowed here)"))
    return renamed


def _key_path(path: str, key: str) -> str:
    """The JSON path of ``key`` in the object at ``path``."""
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"
