"""A workflow drawn for people: a Mermaid flowchart and a plain-text outline.

Pure functions of a (linted) :class:`~segue.workflows.model.Workflow`;
``segue workflows show`` prints them. The flowchart has a start and an end node,
one node per step (its name over its queue), an edge per ``next`` (labelled with
the branch condition, or ``default``, for a switch) and a dashed edge per
``on_failure``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from segue.workflows.conditions import describe
from segue.workflows.model import (
    DatetimeParameter,
    DurationParameter,
    FloatParameter,
    IntegerParameter,
    Parameter,
    RetryPolicy,
    Step,
    StringParameter,
    Switch,
    Workflow,
)
from segue.workflows.parameters import describe_constraint, show_value

_START, _END = "start", "done"  # "end" is a Mermaid keyword
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;"}


@dataclass(frozen=True)
class Edge:
    """Where a step may continue: ``target`` (None: the end), why, and whether only on failure."""

    target: str | None
    label: str = ""
    on_failure: bool = False


def edges(step: Step) -> list[Edge]:
    """Every way out of ``step``: its ``next`` (each branch of a switch) and ``on_failure``."""
    if isinstance(step.next, Switch):
        found = [Edge(branch.goto, describe(branch.when)) for branch in step.next.branches]
        found.append(Edge(step.next.default, "default"))
    else:
        found = [Edge(step.next)]
    if step.on_failure is not None:
        found.append(Edge(step.on_failure, "on failure", on_failure=True))
    return found


# --- Mermaid ---------------------------------------------------------------------------


def to_mermaid(workflow: Workflow) -> str:
    """A Mermaid ``flowchart TD`` of the workflow's steps, ending with a newline."""
    ids = _node_ids(workflow)
    lines = ["flowchart TD", f'    {_START}(["start"])']
    lines.extend(f'    {ids[step.name]}["{_step_label(step)}"]' for step in workflow.steps)
    lines.extend(
        f'    {node}["{_escape(name)}<br/>(unknown step)"]'
        for name, node in ids.items()
        if node.startswith("u")
    )
    lines.append(f'    {_END}(["end"])')
    lines.append(f"    {_START} --> {ids[workflow.first_step.name]}")
    for step in workflow.steps:
        lines.extend(f"    {_mermaid_edge(ids[step.name], edge, ids)}" for edge in edges(step))
    return "\n".join(lines) + "\n"


def _step_label(step: Step) -> str:
    """The step's name over its queue."""
    return f"{_escape(step.name)}<br/>({_escape(step.queue)})"


def _node_ids(workflow: Workflow) -> dict[str, str]:
    """Step name -> node id: ``s<index>`` for a step (the first of a name), ``u<n>`` for
    a step referred to but missing (lint refuses such a file; it is drawn anyway)."""
    ids: dict[str, str] = {}
    for index, step in enumerate(workflow.steps):
        ids.setdefault(step.name, f"s{index}")
    for step in workflow.steps:
        for edge in edges(step):
            if edge.target is not None:
                ids.setdefault(edge.target, f"u{len(ids)}")
    return ids


def _mermaid_edge(source: str, edge: Edge, ids: dict[str, str]) -> str:
    """One edge: solid for ``next``, dashed for ``on_failure``, labelled when it has a label."""
    target = _END if edge.target is None else ids[edge.target]
    arrow = "-.->" if edge.on_failure else "-->"
    label = f'|"{_escape(edge.label)}"|' if edge.label else ""
    return f"{source} {arrow}{label} {target}"


def _escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for ``#"<>``)."""
    return "".join(_MERMAID_ESCAPES.get(char, char) for char in text)


# --- outline ---------------------------------------------------------------------------


def to_outline(workflow: Workflow) -> str:
    """The workflow as readable text: its parameters, then each step and where it goes."""
    lines = [f"{workflow.name} (version {workflow.version})"]
    if workflow.description:
        lines.append(workflow.description)
    timeout = _seconds(workflow.timeout_s) if workflow.timeout_s else "none"
    lines.extend([f"job timeout: {timeout}", "", "parameters:"])
    for param in workflow.parameters:
        lines.extend(_parameter_lines(param))
    if not workflow.parameters:
        lines.append("  (none)")
    lines.extend(["", "steps:"])
    for number, step in enumerate(workflow.steps, start=1):
        lines.extend(_step_lines(number, step))
    return "\n".join(lines) + "\n"


def _parameter_lines(param: Parameter) -> list[str]:
    """``name: type, details`` and, when there is one, a line with the title and help."""
    details = [param.type, *(["required"] if param.required else [])]
    if param.default is not None:
        details.append(f"default {show_value(param, param.default)}")
    details.extend(_limits(param))
    details.extend(f"must be {describe_constraint(c)}" for c in param.constraints)
    lines = [f"  {param.name}: {', '.join(details)}"]
    about = ": ".join(text for text in (param.title, param.description) if text)
    if about:
        lines.append(f"      {about}")
    return lines


def _limits(param: Parameter) -> list[str]:
    """The options, length or bounds of a parameter, in words."""
    limits: list[str] = []
    if isinstance(param, StringParameter):
        if param.enum is not None:
            options = [
                json.dumps(o.value) + (f" ({o.label})" if o.label else "") for o in param.enum
            ]
            limits.append(f"one of {', '.join(options)}")
        if param.min_length is not None:
            limits.append(f"at least {param.min_length} characters")
        if param.max_length is not None:
            limits.append(f"at most {param.max_length} characters")
    elif isinstance(
        param, IntegerParameter | FloatParameter | DatetimeParameter | DurationParameter
    ):
        if param.minimum is not None:
            limits.append(f"minimum {show_value(param, param.minimum)}")
        if param.maximum is not None:
            limits.append(f"maximum {show_value(param, param.maximum)}")
    return limits


def _step_lines(number: int, step: Step) -> list[str]:
    """A step: name and queue, description, timeouts and retry, then where it goes."""
    lines = [f"  {number}. {step.name} (queue {step.queue})"]
    if step.description:
        lines.append(f"     {step.description}")
    settings = [
        f"timeout {_seconds(step.timeout_s) if step.timeout_s else 'none'}",
        f"heartbeat {_seconds(step.heartbeat_s) if step.heartbeat_s else 'none'}",
    ]
    if step.dispatch_timeout_s:
        settings.append(f"dispatch timeout {_seconds(step.dispatch_timeout_s)}")
    settings.extend([_retry(step.retry), f"max crashes {step.max_crashes}"])
    lines.append(f"     {', '.join(settings)}")
    lines.append(f"     next: {_next(step)}")
    if step.on_failure is not None:
        lines.append(f"     on failure: {step.on_failure}")
    return lines


def _retry(retry: RetryPolicy) -> str:
    """The retry policy in words."""
    if retry.max_attempts == 1:
        return "no retries"
    text = (
        f"up to {retry.max_attempts} attempts (first delay {_seconds(retry.initial_delay_s)}, "
        f"x{retry.backoff_factor:g}, at most {_seconds(retry.max_delay_s)}, "
        f"jitter {retry.jitter:.0%})"
    )
    if retry.non_retryable:
        text += f", not retried on {', '.join(retry.non_retryable)}"
    return text


def _next(step: Step) -> str:
    """Where the step goes when it succeeds."""
    if not isinstance(step.next, Switch):
        return step.next or "end"
    branches = [
        f"{branch.goto or 'end'} if {describe(branch.when)}" for branch in step.next.branches
    ]
    return "; ".join([*branches, f"otherwise {step.next.default or 'end'}"])


def _seconds(seconds: float) -> str:
    """``1800.0`` -> ``1800 s``, ``0.5`` -> ``0.5 s``."""
    return f"{int(seconds)} s" if float(seconds).is_integer() else f"{seconds} s"
