"""Load ``workflow_config.json`` into a :class:`Catalog` of checked workflows.

Loading validates the file with the pydantic model, then runs :func:`lint`; any
problem raises :class:`WorkflowConfigError`, which names the file and lists each
problem as ``<JSON path>: <reason>`` so the service refuses to start and says why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from segue.errors import ConfigurationError
from segue.protocol.messages import WorkflowInfo
from segue.protocol.names import QUEUE_NAME_PATTERN
from segue.workflows.legacy import from_legacy, legacy_problems
from segue.workflows.lint import Problem, lint
from segue.workflows.model import (
    INPUT_VAR_PATTERN,
    NAME_PATTERN,
    OWNER_PATTERN,
    UNION_TAGS,
    VAR_PATTERN,
    ScheduleSpec,
    Workflow,
    WorkflowFile,
)
from segue.workflows.parameters import parameters_schema
from segue.workflows.schedules import schedule_problems

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})
_PATTERN_WORDS = {
    VAR_PATTERN: "a variable: params.<name> or outputs.<step>.<key>[.<key>...]",
    INPUT_VAR_PATTERN: "a variable: params.<name>, outputs.<step> or outputs.<step>.<key>...",
    NAME_PATTERN: "a name: a letter, then up to 99 letters, digits, '_' or '-'",
    QUEUE_NAME_PATTERN.pattern: "a queue name: 1 to 100 letters, digits, '_', '.' or '-'",
    OWNER_PATTERN: "a RabbitMQ user name: 1 to 200 characters, no control characters",
}


class WorkflowConfigError(ConfigurationError):
    """A workflow file cannot be used; ``problems`` says where and why."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        lines = [f"invalid workflow file {source} ({len(problems)} problem(s)):"]
        lines.extend(f"  {problem.path}: {problem.reason}" for problem in problems)
        super().__init__("\n".join(lines))
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class LoadedWorkflow:
    """A checked workflow with what jobs pin (its content hash) and its params' schema."""

    workflow: Workflow
    content_hash: str
    parameters_schema: dict[str, Any]

    @classmethod
    def of(cls, workflow: Workflow) -> LoadedWorkflow:
        """Wrap an already-linted workflow, computing its hash and parameters schema."""
        return cls(workflow, content_hash(workflow), parameters_schema(workflow))

    def info(self) -> WorkflowInfo:
        """The workflow as offered to clients (``segue workflows list``, forms in a UI)."""
        return WorkflowInfo(
            name=self.workflow.name,
            description=self.workflow.description,
            version=self.workflow.version,
            content_hash=self.content_hash,
            steps=[step.name for step in self.workflow.steps],
            parameters_schema=self.parameters_schema,
        )


class Catalog:
    """The workflows of one file, by name, in file order.

    ``legacy``: the file was in the legacy OMOTES format (its workflows are the
    task types of OMOTES workers; see :mod:`segue.omotes.bridge`). ``schedules``:
    the recurring jobs the file defines (see :mod:`segue.service.scheduler`).
    """

    def __init__(
        self,
        workflows: Iterable[LoadedWorkflow],
        *,
        legacy: bool = False,
        schedules: Iterable[ScheduleSpec] = (),
    ) -> None:
        self.legacy = legacy
        self.schedules = tuple(schedules)
        self._by_name: dict[str, LoadedWorkflow] = {}
        for loaded in workflows:
            name = loaded.workflow.name
            if name in self._by_name:
                raise ConfigurationError(f"workflow {name!r} is in the catalog twice")
            self._by_name[name] = loaded

    def get(self, name: str) -> LoadedWorkflow | None:
        """The workflow called ``name``, or None."""
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        """The workflow names in file order."""
        return list(self._by_name)

    def queues(self) -> set[str]:
        """Every step queue of every workflow: the task types workers must serve."""
        return {
            step.queue
            for loaded in self
            for step in loaded.workflow.steps
            if step.queue is not None
        }

    def __iter__(self) -> Iterator[LoadedWorkflow]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"Catalog({self.names!r})"


def content_hash(workflow: Workflow) -> str:
    """SHA-256 (hex) of the workflow's canonical JSON: what a job pins."""
    data = workflow.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_workflows(path: Path) -> Catalog:
    """Read, validate and lint the workflow file at ``path``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise WorkflowConfigError(source, [Problem("$", "file not found")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowConfigError(source, [Problem("$", f"cannot read the file: {exc}")]) from exc
    try:
        data = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_reject_duplicate_keys
        )
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise WorkflowConfigError(source, [Problem("$", reason)]) from exc
    except _JsonContentError as exc:
        raise WorkflowConfigError(source, [Problem("$", f"invalid JSON: {exc}")]) from exc
    return parse_workflows(data, source)


def parse_workflows(data: Any, source: str = "<memory>") -> Catalog:
    """Validate and lint already-parsed JSON; ``source`` names it in errors."""
    if isinstance(data, list):
        return _parse_legacy(data, source)
    if not isinstance(data, dict):
        reason = "the file must hold a JSON object with 'format_version' and 'workflows'"
        raise WorkflowConfigError(source, [Problem("$", reason)])
    try:
        file = WorkflowFile.model_validate(data)
    except ValidationError as exc:
        raise WorkflowConfigError(source, _model_problems(exc)) from exc
    problems = [*lint(file), *schedule_problems(file)]
    if problems:
        raise WorkflowConfigError(source, problems)
    loaded = (LoadedWorkflow.of(workflow) for workflow in file.workflows)
    return Catalog(loaded, schedules=file.schedules)


def _parse_legacy(data: list[Any], source: str) -> Catalog:
    """The legacy OMOTES format: a top-level array of single-step workflow types.

    Each item becomes a one-step workflow whose step and queue are named by its
    ``workflow_type_name`` (see :mod:`segue.workflows.legacy`); the result goes
    through the model and :func:`lint` like any file, and problems name places
    in the legacy file.
    """
    converted, problems = from_legacy(data)
    try:
        file = WorkflowFile.model_validate(converted)
    except ValidationError as exc:
        problems.extend(legacy_problems(_model_problems(exc)))
        raise WorkflowConfigError(source, problems) from exc
    problems.extend(legacy_problems(lint(file)))
    if problems:
        raise WorkflowConfigError(source, problems)
    return Catalog((LoadedWorkflow.of(workflow) for workflow in file.workflows), legacy=True)


def _model_problems(exc: ValidationError) -> list[Problem]:
    """One :class:`Problem` per pydantic error, with a JSON path into the file."""
    return [Problem(_json_path(error), _reason(error)) for error in exc.errors()]


def _json_path(error: ErrorDetails) -> str:
    """``('workflows', 0, 'steps', 1, 'timeout_s')`` -> ``$.workflows[0].steps[1].timeout_s``.

    Tags of tagged unions are dropped: they are in the location, not in the file
    (except as the last part of an unknown key, which is the key itself). A missing
    or unknown tag is a problem of the key holding it (``...parameters[0].type``).
    """
    loc = error["loc"]
    if error["type"] in _TAG_ERRORS:
        loc = (*loc, str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    parts = ["$"]
    for index, part in enumerate(loc):
        is_key = index == len(loc) - 1 and error["type"] == "extra_forbidden"
        if part == "[key]":  # pydantic's marker of a dict key that is invalid
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in UNION_TAGS and not is_key:
            continue
        elif _KEY.match(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part)}]")
    return "".join(parts)


def _reason(error: ErrorDetails) -> str:
    """Pydantic's message, worded for a file and with the offending value."""
    kind, value = error["type"], error.get("input")
    if kind in ("missing", "union_tag_not_found"):
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (not allowed here)"
    context = error.get("ctx", {})
    if kind == "value_error":
        message = str(context.get("error", error["msg"]))
    elif kind == "string_pattern_mismatch" and context.get("pattern") in _PATTERN_WORDS:
        message = f"must be {_PATTERN_WORDS[context['pattern']]}"
    elif kind == "union_tag_invalid":
        message = f"must be one of {context.get('expected_tags')}"
        value = context.get("tag")
    else:
        message = error["msg"]
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{message} (got {json.dumps(value)})"
    return message


class _JsonContentError(ValueError):
    """Valid JSON syntax that a workflow file must not hold (NaN, a repeated key)."""


def _reject_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON, though Python's parser accepts them."""
    raise _JsonContentError(f"{name} is not a JSON number")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice in one object would silently keep only the last value."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonContentError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result
