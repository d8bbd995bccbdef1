"""Checks across a workflow file that the model alone cannot make.

The model checks each object's shape; :func:`lint` checks how they fit together:
duplicate names, references to unknown steps, loops, unreachable steps, conditions
on unknown variables, parameter specs that contradict themselves and constraints
between parameters that name unknown parameters or compare what has no order. Each
:class:`Problem` names the place in the file (a JSON path) and what is wrong.
Using one queue in several steps, even with different settings, is allowed: the
settings belong to the step, the queue only says which workers run it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from segue.workflows.conditions import walk_vars
from segue.workflows.model import (
    DatetimeParameter,
    DurationParameter,
    FloatParameter,
    IntegerParameter,
    Parameter,
    Step,
    StringParameter,
    Switch,
    Workflow,
    WorkflowFile,
)
from segue.workflows.parameters import (
    comparable,
    constraint_problem,
    default_problems,
    order_key,
    show_value,
)

Graph = Mapping[str, list[tuple[str, str]]]
"""Step name -> (next step name, JSON path of the reference) for each known target."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a workflow file: where (JSON path) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def lint(file: WorkflowFile) -> list[Problem]:
    """Every cross-reference problem in ``file``, rule by rule (empty: it is fine)."""
    names = [workflow.name for workflow in file.workflows]
    problems = _duplicates(names, "$.workflows", "workflow")
    for index, workflow in enumerate(file.workflows):
        problems.extend(lint_workflow(workflow, f"$.workflows[{index}]"))
    return problems


def lint_workflow(workflow: Workflow, path: str = "$") -> list[Problem]:
    """Every problem within one workflow found at ``path`` of its file."""
    graph = _graph(workflow, path)
    return [
        *_duplicates([step.name for step in workflow.steps], f"{path}.steps", "step"),
        *_duplicates(
            [param.name for param in workflow.parameters], f"{path}.parameters", "parameter"
        ),
        *_parameter_problems(workflow, path),
        *_unknown_targets(workflow, path),
        *_loops(graph, [step.name for step in workflow.steps]),
        *_unreachable(workflow, graph, path),
        *_condition_problems(workflow, graph, path),
    ]


def _duplicates(names: list[str], path: str, kind: str) -> list[Problem]:
    """A problem for each name that an earlier item of the same list already has."""
    first: dict[str, int] = {}
    problems = []
    for index, name in enumerate(names):
        if name in first:
            reason = f"duplicate {kind} name {name!r} (also at {path}[{first[name]}])"
            problems.append(Problem(f"{path}[{index}].name", reason))
        first.setdefault(name, index)
    return problems


# --- parameters ------------------------------------------------------------------------


def _parameter_problems(workflow: Workflow, path: str) -> Iterator[Problem]:
    """Parameter specs that contradict themselves."""
    for index, param in enumerate(workflow.parameters):
        where = f"{path}.parameters[{index}]"
        yield from _bounds_problems(param, where)
        if isinstance(param, StringParameter) and param.enum is not None:
            values = [option.value for option in param.enum]
            yield from _duplicate_enum_values(values, f"{where}.enum")
        if param.required and param.default is not None:
            reason = "a required parameter has no default: the submitter must give a value"
            yield Problem(f"{where}.default", reason)
        for reason in default_problems(param):
            yield Problem(f"{where}.default", reason)
    yield from _constraint_problems(workflow, path)


def _bounds_problems(param: Parameter, where: str) -> Iterator[Problem]:
    """A lower bound above the upper bound leaves no valid value."""
    if isinstance(param, DatetimeParameter | DurationParameter):
        yield from _time_bounds_problems(param, where)
        return
    if isinstance(param, IntegerParameter | FloatParameter):
        low, high, key = param.minimum, param.maximum, "minimum"
    elif isinstance(param, StringParameter):
        low, high, key = param.min_length, param.max_length, "min_length"
    else:
        return
    if low is not None and high is not None and low > high:
        upper = key.replace("min", "max")
        yield Problem(f"{where}.{key}", f"{key} {low} is greater than {upper} {high}")


def _time_bounds_problems(
    param: DatetimeParameter | DurationParameter, where: str
) -> Iterator[Problem]:
    """A datetime minimum after its maximum, or a duration minimum longer than its maximum."""
    low, high = param.minimum, param.maximum
    if low is None or high is None or order_key(param, low) <= order_key(param, high):
        return
    word = "after" if isinstance(param, DatetimeParameter) else "longer than"
    reason = f"minimum {show_value(param, low)} is {word} maximum {show_value(param, high)}"
    yield Problem(f"{where}.minimum", reason)


def _constraint_problems(workflow: Workflow, path: str) -> Iterator[Problem]:
    """Constraints on unknown parameters, between values without a common order, or
    that the defaults already break (every job relying on them would be refused)."""
    by_name = {param.name: param for param in workflow.parameters}
    defaults = {p.name: p.default for p in workflow.parameters if p.default is not None}
    for index, param in enumerate(workflow.parameters):
        for number, constraint in enumerate(param.constraints):
            where = f"{path}.parameters[{index}].constraints[{number}]"
            problem = _constraint_target_problem(param, constraint.other, by_name, where)
            if problem is not None:
                yield problem
                continue
            broken = constraint_problem(param, constraint, by_name, defaults)
            if broken is not None:
                yield Problem(where, f"the defaults break it: {param.name} {broken}")


def _constraint_target_problem(
    param: Parameter, other: str, by_name: Mapping[str, Parameter], where: str
) -> Problem | None:
    """Why ``param`` cannot be compared with the parameter called ``other`` (None: it can)."""
    if other not in by_name:
        known = ", ".join(by_name)
        return Problem(f"{where}.other", f"unknown parameter {other!r} (parameters: {known})")
    if other == param.name:
        return Problem(f"{where}.other", "a parameter cannot be compared with itself")
    if not comparable(param, param):
        reason = (
            f"{_a(param.type)} parameter has no order: constraints compare numbers, "
            "datetimes or durations"
        )
        return Problem(where, reason)
    if not comparable(param, by_name[other]):
        reason = (
            f"parameter {other!r} is {_a(by_name[other].type)}, which does not compare "
            f"with {param.name!r}, {_a(param.type)}"
        )
        return Problem(f"{where}.other", reason)
    return None


def _a(word: str) -> str:
    """``word`` with its indefinite article: ``an integer``, ``a float``."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _duplicate_enum_values(values: list[str], path: str) -> Iterator[Problem]:
    """An option listed twice."""
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in first:
            reason = f"duplicate enum value {value!r} (also at {path}[{first[value]}])"
            yield Problem(f"{path}[{index}].value", reason)
        first.setdefault(value, index)


# --- the step graph --------------------------------------------------------------------


def _references(step: Step, path: str) -> Iterator[tuple[str, str]]:
    """(JSON path, step name) of every step ``step`` may continue with."""
    if isinstance(step.next, str):
        yield f"{path}.next", step.next
    elif isinstance(step.next, Switch):
        for index, branch in enumerate(step.next.branches):
            if branch.goto is not None:
                yield f"{path}.next.branches[{index}].goto", branch.goto
        if step.next.default is not None:
            yield f"{path}.next.default", step.next.default
    if step.on_failure is not None:
        yield f"{path}.on_failure", step.on_failure


def _graph(workflow: Workflow, path: str) -> Graph:
    """The step graph; a duplicate step name counts once, references to unknown steps not."""
    graph: dict[str, list[tuple[str, str]]] = {}
    for index, step in enumerate(workflow.steps):
        if step.name in graph:
            continue
        graph[step.name] = list(_references(step, f"{path}.steps[{index}]"))
    names = graph.keys()
    return {name: [(t, p) for p, t in edges if t in names] for name, edges in graph.items()}


def _unknown_targets(workflow: Workflow, path: str) -> Iterator[Problem]:
    """References to steps the workflow does not have."""
    names = [step.name for step in workflow.steps]
    for index, step in enumerate(workflow.steps):
        for where, target in _references(step, f"{path}.steps[{index}]"):
            if target not in names:
                yield Problem(where, f"unknown step {target!r} (steps: {', '.join(names)})")


def _loops(graph: Graph, order: list[str]) -> list[Problem]:
    """A problem at each reference that closes a loop (depth-first, iterative)."""
    on_path: dict[str, bool] = {}  # visited steps; True while on the current path
    problems: list[Problem] = []
    for root in order:
        if root in on_path:
            continue
        trail, stack = [root], [iter(graph[root])]
        on_path[root] = True
        while stack:
            target, where = next(stack[-1], ("", ""))
            if not target:  # every reference of trail[-1] followed
                on_path[trail.pop()] = False
                stack.pop()
            elif on_path.get(target):
                loop = " -> ".join([*trail[trail.index(target) :], target])
                reason = f"loop without a bound: {loop} (bounded loops are not supported yet)"
                problems.append(Problem(where, reason))
            elif target not in on_path:
                on_path[target] = True
                trail.append(target)
                stack.append(iter(graph[target]))
    return problems


def _reachable(graph: Graph, start: str) -> set[str]:
    """The steps a job at ``start`` may get to, ``start`` included."""
    seen = {start}
    todo = deque([start])
    while todo:
        for target, _ in graph[todo.popleft()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _unreachable(workflow: Workflow, graph: Graph, path: str) -> Iterator[Problem]:
    """Steps no job ever gets to."""
    first = workflow.first_step.name
    reached = _reachable(graph, first)
    for index, step in enumerate(workflow.steps):
        if step.name not in reached:
            reason = f"step {step.name!r} is unreachable from the first step {first!r}"
            yield Problem(f"{path}.steps[{index}]", reason)


# --- conditions ------------------------------------------------------------------------


def _condition_problems(workflow: Workflow, graph: Graph, path: str) -> Iterator[Problem]:
    """Branch conditions that read unknown params or outputs no earlier step makes."""
    for index, step in enumerate(workflow.steps):
        if not isinstance(step.next, Switch):
            continue
        before = {name for name in graph if step.name in _reachable(graph, name)}
        for number, branch in enumerate(step.next.branches):
            where = f"{path}.steps[{index}].next.branches[{number}].when"
            for var_path, var in walk_vars(branch.when, where):
                reason = _variable_problem(var, workflow, step.name, before)
                if reason is not None:
                    yield Problem(var_path, reason)


def _variable_problem(var: str, workflow: Workflow, step: str, before: set[str]) -> str | None:
    """Why ``var`` can never have a value when ``step`` ends (None: it can)."""
    scope, name = var.split(".")[:2]
    if scope == "params":
        known = [param.name for param in workflow.parameters]
        if name not in known:
            return f"unknown parameter {name!r} (parameters: {', '.join(known) or 'none'})"
        return None
    if all(other.name != name for other in workflow.steps):
        return f"unknown step {name!r} in {var!r}"
    if name not in before:
        return f"step {name!r} never runs before step {step!r}, so {var!r} is always missing"
    return None
