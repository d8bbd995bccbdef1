"""What a task is given and what it may give back: inputs, map items, output size.

Pure functions of the job's params and outputs. A step that cannot start
(a missing input, a map over something that is not a list) is told with an
:class:`~segue.protocol.messages.ErrorInfo` rather than an exception, so the
engine fails the step and goes on.
"""

from __future__ import annotations

import json
from typing import Any

from segue.engine.state import Job
from segue.errors import SegueError
from segue.protocol.messages import ErrorInfo, JsonObject
from segue.workflows.conditions import MISSING, json_kind, lookup, why_missing
from segue.workflows.model import Step, Workflow

INPUT_ERROR = "input_error"
"""A step's ``input`` names a value the job does not have."""
MAP_ERROR = "map_error"
"""A map step's ``over`` is missing or not a list."""
OUTPUT_TOO_LARGE = "output_too_large"
"""An attempt returned more than the step's output limit (never retried)."""
WORKFLOW_ERROR = "workflow_error"
"""The pinned workflow cannot run this step (lint refuses such files)."""


class TaskDataError(SegueError):
    """A task's data could not be made although its step started: a bug, never a user's
    mistake (the step's inputs are checked when it starts and do not change while it runs)."""


def step_problem(job: Job, step: Step) -> ErrorInfo | None:
    """Why ``step`` cannot start its tasks now (None: it can)."""
    if step.queue is None:
        return ErrorInfo(
            kind=WORKFLOW_ERROR, message=f"step {step.name!r} has no queue", step=step.name
        )
    inputs = task_inputs(job, step)
    if isinstance(inputs, ErrorInfo):
        return inputs
    items = map_items(job, step)
    return items if isinstance(items, ErrorInfo) else None


def task_inputs(job: Job, step: Step) -> JsonObject | ErrorInfo:
    """The ``inputs`` of a task of ``step``: exactly its ``input`` names, or, without
    ``input``, every output so far by step name."""
    if step.input is None:
        return dict(job.outputs)
    inputs: JsonObject = {}
    for name, var in step.input.items():
        value = lookup(var, job.params, job.outputs)
        if value is MISSING:
            why = why_missing(var, job.params, job.outputs)
            message = f"input {name!r} of step {step.name!r} reads {var}, but {why}"
            return ErrorInfo(kind=INPUT_ERROR, message=message, step=step.name)
        inputs[name] = value
    return inputs


def map_items(job: Job, step: Step) -> list[Any] | ErrorInfo:
    """The items a map step runs over (empty for a step without ``map``)."""
    if step.map is None:
        return []
    var = step.map.over
    value = lookup(var, job.params, job.outputs)
    if isinstance(value, list):
        return value
    if value is MISSING:
        found = why_missing(var, job.params, job.outputs)
    else:
        found = f"it is {json_kind(value)}"
    message = f"step {step.name!r} maps over {var}, which must be a list, but {found}"
    return ErrorInfo(kind=MAP_ERROR, message=message, step=step.name)


def task_data(job: Job, step: Step, item_index: int | None) -> tuple[JsonObject, Any]:
    """(inputs, item) of a task of ``step``; raises :class:`TaskDataError` if the step
    could not start now (which :func:`step_problem` ruled out when it started)."""
    inputs = task_inputs(job, step)
    if isinstance(inputs, ErrorInfo):
        raise TaskDataError(inputs.message)
    if item_index is None:
        return inputs, None
    items = map_items(job, step)
    if isinstance(items, ErrorInfo) or not 0 <= item_index < len(items):
        raise TaskDataError(f"step {step.name!r} has no item {item_index}")
    return inputs, items[item_index]


def output_bytes(output: JsonObject) -> int:
    """The size of ``output`` as compact UTF-8 JSON, the measure of the output limit."""
    text = json.dumps(output, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode())


def output_problem(
    workflow: Workflow, step: Step, output: JsonObject, item_index: int | None
) -> ErrorInfo | None:
    """Why ``output`` is refused (too large for the step), or None."""
    limit = workflow.output_limit(step)
    size = output_bytes(output)
    if size <= limit:
        return None
    which = f"step {step.name!r}" + ("" if item_index is None else f" (item {item_index})")
    message = (
        f"output of {which} is {size} bytes, over the limit of {limit} bytes; "
        "pass large data by reference (a URL or path)"
    )
    return ErrorInfo(kind=OUTPUT_TOO_LARGE, message=message, step=step.name)
