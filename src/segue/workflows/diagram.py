"""A workflow drawn for people: a Mermaid flowchart and a plain-text outline.

Pure functions of a (linted) :class:`~segue.workflows.model.Workflow`;
``segue workflows show`` prints them. The flowchart has a start and an end node,
one node per step (its name over its queue), an edge per ``next`` (labelled with
the branch condition, or ``default``, for a switch) and a dashed edge per
``on_failure``. A map step is a subroutine box saying what it runs over; a
parallel step is a hexagon with an edge to each branch, whose edges meet in a
join node where the parallel step continues; a repeated step has an edge back
to itself labelled with its ``until`` condition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from segue.workflows.conditions import describe
from segue.workflows.model import (
    DEFAULT_DISPATCH_TIMEOUT_S,
    DatetimeParameter,
    DurationParameter,
    FloatParameter,
    IntegerParameter,
    ListParameter,
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
    parents = _branch_parents(workflow)
    lines = ["flowchart TD", f'    {_START}(["start"])']
    lines.extend(f"    {_node(ids[step.name], step)}" for step in workflow.steps)
    lines.extend(
        f'    {node}["{_escape(name)}<br/>(unknown step)"]'
        for name, node in ids.items()
        if node.startswith("u")
    )
    lines.extend(
        f'    {_join_id(ids, step.name)}(("join {_escape(step.name)}"))'
        for step in workflow.steps
        if step.parallel is not None
    )
    lines.append(f'    {_END}(["end"])')
    lines.append(f"    {_START} --> {ids[workflow.first_step.name]}")
    for step in workflow.steps:
        lines.extend(f"    {line}" for line in _step_edges(step, ids, parents))
    return "\n".join(lines) + "\n"


def _node(node: str, step: Step) -> str:
    """A step's node: a box, a subroutine box for a map, a hexagon for a parallel step."""
    if step.parallel is not None:
        text = f"{_escape(step.name)}<br/>(parallel{_tolerance(step.parallel.tolerate_failures)})"
        return f'{node}{{{{"{text}"}}}}'
    if step.map is not None:
        spec = step.map
        about = f"for each of {spec.over}, {spec.max_concurrency} at a time"
        text = f"{_step_label(step)}<br/>{_escape(about + _tolerance(spec.tolerate_failures))}"
        return f'{node}[["{text}"]]'
    return f'{node}["{_step_label(step)}"]'


def _tolerance(failures: int) -> str:
    """``, tolerates 2 failures`` (empty when none are tolerated)."""
    return f", tolerates {_count(failures, 'failure')}" if failures else ""


def _count(number: int, noun: str) -> str:
    """``1 item``, ``2 items``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _step_label(step: Step) -> str:
    """The step's name over its queue."""
    return f"{_escape(step.name)}<br/>({_escape(step.queue or 'no queue')})"


def _join_id(ids: dict[str, str], parallel: str) -> str:
    """The id of the join node of parallel step ``parallel``: ``j<index>``."""
    return "j" + ids[parallel][1:]


def _branch_parents(workflow: Workflow) -> dict[str, str]:
    """Branch step name -> the parallel step it is a branch of."""
    return {
        branch: step.name
        for step in workflow.steps
        if step.parallel is not None
        for branch in step.parallel.branches
        if branch != step.name
    }


def _node_ids(workflow: Workflow) -> dict[str, str]:
    """Step name -> node id: ``s<index>`` for a step (the first of a name), ``u<n>`` for
    a step referred to but missing (lint refuses such a file; it is drawn anyway)."""
    ids: dict[str, str] = {}
    for index, step in enumerate(workflow.steps):
        ids.setdefault(step.name, f"s{index}")
    for step in workflow.steps:
        targets = [edge.target for edge in edges(step)]
        targets.extend(step.parallel.branches if step.parallel is not None else [])
        for target in targets:
            if target is not None:
                ids.setdefault(target, f"u{len(ids)}")
    return ids


def _step_edges(step: Step, ids: dict[str, str], parents: dict[str, str]) -> list[str]:
    """Every edge out of ``step``: to its branches, back to itself, then ``next``/``on_failure``.

    A parallel step continues from its join node; a branch without ``next`` ends
    in the join node of its parallel step.
    """
    source = ids[step.name]
    found: list[str] = []
    if step.parallel is not None:
        found.extend(f"{source} --> {ids[branch]}" for branch in step.parallel.branches)
        source = _join_id(ids, step.name)
    if step.repeat is not None:
        until = describe(step.repeat.until)
        label = f"repeat until {until}, at most {step.repeat.max_iterations} times"
        found.append(f'{ids[step.name]} -->|"{_escape(label)}"| {ids[step.name]}')
    parent = parents.get(step.name)
    end = _join_id(ids, parent) if parent is not None and parent in ids else _END
    found.extend(_mermaid_edge(source, edge, ids, end) for edge in edges(step))
    return found


def _mermaid_edge(source: str, edge: Edge, ids: dict[str, str], end: str = _END) -> str:
    """One edge: solid for ``next``, dashed for ``on_failure``, labelled when it has a label."""
    target = end if edge.target is None else ids[edge.target]
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
    lines.append(f"job timeout: {timeout}")
    lines.extend([f"largest step output: {workflow.max_output_bytes} bytes", "", "parameters:"])
    for param in workflow.parameters:
        lines.extend(_parameter_lines(param))
    if not workflow.parameters:
        lines.append("  (none)")
    lines.extend(["", "steps:"])
    parents = _branch_parents(workflow)
    for number, step in enumerate(workflow.steps, start=1):
        lines.extend(_step_lines(number, step, parents.get(step.name)))
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
    elif isinstance(param, ListParameter):
        limits.append(f"items {param.items.type}")
        if param.min_items is not None:
            limits.append(f"at least {_count(param.min_items, 'item')}")
        if param.max_items is not None:
            limits.append(f"at most {_count(param.max_items, 'item')}")
    elif isinstance(
        param, IntegerParameter | FloatParameter | DatetimeParameter | DurationParameter
    ):
        if param.minimum is not None:
            limits.append(f"minimum {show_value(param, param.minimum)}")
        if param.maximum is not None:
            limits.append(f"maximum {show_value(param, param.maximum)}")
    return limits


def _step_lines(number: int, step: Step, parent: str | None = None) -> list[str]:
    """A step: what it runs, its settings, then where it goes (``parent``: the parallel
    step it is a branch of)."""
    if step.parallel is not None:
        spec = step.parallel
        joined = f"joins when all are done{_tolerance(spec.tolerate_failures)}"
        lines = [f"  {number}. {step.name} (parallel: {', '.join(spec.branches)}; {joined})"]
    else:
        lines = [f"  {number}. {step.name} (queue {step.queue})"]
    if step.description:
        lines.append(f"     {step.description}")
    if step.parallel is None:
        lines.extend(_task_lines(step))
    if step.repeat is not None:
        until = describe(step.repeat.until)
        lines.append(f"     repeat: until {until}, at most {step.repeat.max_iterations} times")
    if parent is not None and step.next is None:
        lines.append(f"     next: the join of {parent}")
    else:
        lines.append(f"     next: {_next(step)}")
    if step.on_failure is not None:
        lines.append(f"     on failure: {step.on_failure}")
    return lines


def _task_lines(step: Step) -> list[str]:
    """A task step's map, inputs, timeouts, retry policy and output limit."""
    lines = []
    if step.map is not None:
        spec = step.map
        lines.append(
            f"     map: for each item of {spec.over}, at most {spec.max_concurrency} at a time"
            + _tolerance(spec.tolerate_failures)
        )
    if step.input is not None:
        pairs = [f"{name} = {var}" for name, var in step.input.items()]
        lines.append(f"     input: {', '.join(pairs) or 'nothing'}")
    settings = [
        f"timeout {_seconds(step.timeout_s) if step.timeout_s else 'none'}",
        f"heartbeat {_seconds(step.heartbeat_s) if step.heartbeat_s else 'none'}",
    ]
    if step.dispatch_timeout_s and step.dispatch_timeout_s != DEFAULT_DISPATCH_TIMEOUT_S:
        settings.append(f"dispatch timeout {_seconds(step.dispatch_timeout_s)}")
    settings.extend([_retry(step.retry), f"max crashes {step.max_crashes}"])
    if step.max_output_bytes is not None:
        settings.append(f"largest output {step.max_output_bytes} bytes")
    lines.append(f"     {', '.join(settings)}")
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
