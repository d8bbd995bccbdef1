"""Checks across a workflow file that the model alone cannot make.

The model checks each object's shape; :func:`lint` checks how they fit together:
duplicate names, references to unknown steps, loops (``repeat`` is the only way to
loop), unreachable steps, conditions, inputs and map lists reading unknown
variables or outputs no earlier step makes, steps that are both (or neither) a
task and a parallel step, parallel branches that are not plain task steps or are
used elsewhere, parameter specs that contradict themselves and constraints
between parameters that name unknown parameters or compare what has no order.
Each :class:`Problem` names the place in the file (a JSON path) and what is wrong.
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
    ListParameter,
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
    ctx = _Context(workflow, path, graph)
    return [
        *_duplicates([step.name for step in workflow.steps], f"{path}.steps", "step"),
        *_duplicates(
            [param.name for param in workflow.parameters], f"{path}.parameters", "parameter"
        ),
        *_parameter_problems(workflow, path),
        *_kind_problems(workflow, path),
        *_unknown_targets(workflow, path),
        *_branch_problems(workflow, path),
        *_loops(graph, [step.name for step in workflow.steps]),
        *_unreachable(workflow, graph, path),
        *_condition_problems(ctx),
        *_map_problems(ctx),
        *_input_problems(ctx),
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
    elif isinstance(param, ListParameter):
        low, high, key = param.min_items, param.max_items, "min_items"
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


# --- what each step is ----------------------------------------------------------------

TASK_ONLY_KEYS = (
    "map",
    "input",
    "timeout_s",
    "heartbeat_s",
    "dispatch_timeout_s",
    "retry",
    "max_crashes",
    "max_output_bytes",
)
"""Step keys that configure a task, which a parallel step does not run."""


def _kind_problems(workflow: Workflow, path: str) -> Iterator[Problem]:
    """Steps that are both a task and a parallel step, or neither, or a parallel step
    with settings only a task has."""
    for index, step in enumerate(workflow.steps):
        where = f"{path}.steps[{index}]"
        if step.queue is not None and step.parallel is not None:
            reason = (
                "a step has either 'queue' (it runs a task) or 'parallel' "
                "(it runs branch steps), not both"
            )
            yield Problem(where, reason)
        elif step.queue is None and step.parallel is None:
            reason = (
                "a step needs 'queue' (the task type of the workers that run it) "
                "or 'parallel' (the branch steps it runs)"
            )
            yield Problem(where, reason)
        elif step.parallel is not None:
            for key in TASK_ONLY_KEYS:
                if key in step.model_fields_set:
                    reason = (
                        f"a parallel step runs no task of its own, so {key!r} does not "
                        "apply (set it on the branch steps)"
                    )
                    yield Problem(f"{where}.{key}", reason)


# --- the step graph --------------------------------------------------------------------


def _references(step: Step, path: str) -> Iterator[tuple[str, str]]:
    """(JSON path, step name) of every step ``step`` may continue with (its branches too;
    a parallel step naming itself a branch is reported by :func:`_branch_problems`)."""
    if step.parallel is not None:
        for index, branch in enumerate(step.parallel.branches):
            if branch != step.name:
                yield f"{path}.parallel.branches[{index}]", branch
    yield from _continuations(step, path)


def _continuations(step: Step, path: str) -> Iterator[tuple[str, str]]:
    """(JSON path, step name) of the steps after ``step``: ``next`` and ``on_failure``."""
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
    """The step graph; a duplicate step name counts once, references to unknown steps not.

    A parallel step leads to its branches, and each branch to where the parallel
    step continues, so a step after the join has the branches before it.
    """
    graph: dict[str, list[tuple[str, str]]] = {}
    for index, step in enumerate(workflow.steps):
        if step.name not in graph:
            graph[step.name] = list(_references(step, f"{path}.steps[{index}]"))
    for index, step in enumerate(workflow.steps):
        if step.parallel is None or graph.get(step.name) is None:
            continue
        after = list(_continuations(step, f"{path}.steps[{index}]"))
        for branch in step.parallel.branches:
            if branch in graph and branch != step.name:
                graph[branch] = graph[branch] + [(p, t) for p, t in after]
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
                reason = f"loop without a bound: {loop} (to run a step again, give it 'repeat')"
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


# --- parallel branches -----------------------------------------------------------------


def _branch_owners(workflow: Workflow, path: str) -> dict[str, tuple[str, str]]:
    """Branch name -> (parallel step, JSON path) of the first place naming it a branch."""
    owners: dict[str, tuple[str, str]] = {}
    for index, step in enumerate(workflow.steps):
        for where, branch in _branch_references(step, f"{path}.steps[{index}]"):
            if branch != step.name:
                owners.setdefault(branch, (step.name, where))
    return owners


def _branch_references(step: Step, path: str) -> Iterator[tuple[str, str]]:
    """(JSON path, branch name) of each branch of a parallel step."""
    if step.parallel is not None:
        for index, branch in enumerate(step.parallel.branches):
            yield f"{path}.parallel.branches[{index}]", branch


def _branch_problems(workflow: Workflow, path: str) -> Iterator[Problem]:
    """Branches that are not plain task steps, are named twice or also run elsewhere."""
    steps = {step.name: (index, step) for index, step in reversed(list(enumerate(workflow.steps)))}
    owners = _branch_owners(workflow, path)
    for index, step in enumerate(workflow.steps):
        for where, name in _branch_references(step, f"{path}.steps[{index}]"):
            if name == step.name:
                yield Problem(where, "a parallel step cannot be its own branch")
                continue
            owner, first = owners[name]
            if first != where:
                yield Problem(where, f"step {name!r} is already a branch (at {first})")
            elif name in steps:
                yield from _branch_step_problems(steps[name], owner, path)
    yield from _branches_run_elsewhere(workflow, path, owners)


def _branch_step_problems(found: tuple[int, Step], owner: str, path: str) -> Iterator[Problem]:
    """What keeps the step ``found`` (index, step) from being a branch of ``owner``."""
    index, branch = found
    where = f"{path}.steps[{index}]"
    if branch.queue is None or branch.parallel is not None:
        reason = f"branch {branch.name!r} of {owner!r} must be a task step (with a queue)"
        yield Problem(where, reason)
    if branch.next is not None:
        reason = (
            f"step {branch.name!r} is a branch of parallel step {owner!r}, so its 'next' "
            f"must be null: {owner!r} continues after the join"
        )
        yield Problem(f"{where}.next", reason)
    if branch.on_failure is not None:
        reason = (
            f"a failed branch counts against tolerate_failures of {owner!r}; "
            f"put 'on_failure' on {owner!r}"
        )
        yield Problem(f"{where}.on_failure", reason)
    for key in ("map", "repeat"):
        if getattr(branch, key) is not None:
            reason = f"a branch cannot have {key!r} (not supported); make it a step of its own"
            yield Problem(f"{where}.{key}", reason)


def _branches_run_elsewhere(
    workflow: Workflow, path: str, owners: Mapping[str, tuple[str, str]]
) -> Iterator[Problem]:
    """Branches that are also the first step or the target of a ``next``/``on_failure``."""
    first = workflow.first_step.name
    if first in owners:
        reason = f"the first step cannot be a branch of parallel step {owners[first][0]!r}"
        yield Problem(f"{path}.steps[0]", reason)
    for index, step in enumerate(workflow.steps):
        for where, target in _continuations(step, f"{path}.steps[{index}]"):
            if target in owners:
                owner = owners[target][0]
                reason = (
                    f"step {target!r} is a branch of parallel step {owner!r} and runs only "
                    f"there; continue with {owner!r} instead"
                )
                yield Problem(where, reason)


# --- variables: conditions, inputs and map lists ---------------------------------------


@dataclass
class _Context:
    """A workflow with what rules about variables need: which steps run before which."""

    workflow: Workflow
    path: str
    graph: Graph

    def __post_init__(self) -> None:
        reach = {name: _reachable(self.graph, name) for name in self.graph}
        self._before = {
            name: {other for other, seen in reach.items() if name in seen} for name in self.graph
        }
        parents = _branch_owners(self.workflow, self.path)
        self._parent = {branch: owner for branch, (owner, _) in parents.items()}
        targets = [step.on_failure for step in self.workflow.steps if step.on_failure]
        self.after_failure = set().union(
            *(reach[t] for t in targets if t in reach)
        )  # steps on the way of an on_failure step

    def ran(self, step: str) -> set[str]:
        """Steps whose output exists once ``step`` has succeeded (``step`` included)."""
        return self._before.get(step, {step})

    def available(self, step: str) -> set[str]:
        """Steps whose output exists when ``step`` starts: not its own, nor its
        parallel step's (which is made at the join)."""
        return self.ran(step) - {step, self._parent.get(step, "")}


def _condition_problems(ctx: _Context) -> Iterator[Problem]:
    """Branch and ``until`` conditions that read unknown params or outputs no earlier
    step makes (a step's own output is there: it has just succeeded)."""
    for index, step in enumerate(ctx.workflow.steps):
        where = f"{ctx.path}.steps[{index}]"
        conditions = []
        if isinstance(step.next, Switch):
            conditions = [
                (f"{where}.next.branches[{number}].when", branch.when)
                for number, branch in enumerate(step.next.branches)
            ]
        if step.repeat is not None:
            conditions.append((f"{where}.repeat.until", step.repeat.until))
        for condition_path, condition in conditions:
            for var_path, var in walk_vars(condition, condition_path):
                reason = _variable_problem(var, ctx.workflow, step.name, ctx.ran(step.name))
                if reason is not None:
                    yield Problem(var_path, reason)


def _map_problems(ctx: _Context) -> Iterator[Problem]:
    """Map lists that name unknown or non-list params, or outputs no earlier step makes."""
    params = {param.name: param for param in ctx.workflow.parameters}
    for index, step in enumerate(ctx.workflow.steps):
        if step.map is None:
            continue
        var = step.map.over
        scope, name = var.split(".")[:2]
        reason = _variable_problem(var, ctx.workflow, step.name, ctx.available(step.name))
        if reason is None and scope == "params" and params[name].type != "list":
            reason = (
                f"parameter {name!r} is {_a(params[name].type)}, not a list: a map needs "
                "a parameter of type 'list' (or a list in an earlier step's output)"
            )
        if reason is not None:
            yield Problem(f"{ctx.path}.steps[{index}].map.over", reason)


def _input_problems(ctx: _Context) -> Iterator[Problem]:
    """Inputs that read unknown params, or outputs that do not exist when the step starts."""
    for index, step in enumerate(ctx.workflow.steps):
        for name, var in (step.input or {}).items():
            reason = _input_problem(ctx, step.name, var)
            if reason is not None:
                yield Problem(f"{ctx.path}.steps[{index}].input.{name}", reason)


def _input_problem(ctx: _Context, step: str, var: str) -> str | None:
    """Why input ``var`` of ``step`` can never have a value (None: it can)."""
    if var.split(".")[:2] == ["outputs", "_failure"]:
        if step in ctx.after_failure:
            return None
        return f"step {step!r} never runs after an on_failure, so {var!r} is always missing"
    if var.split(".")[:2] == ["outputs", step]:
        return (
            f"a step cannot take its own output as input ({var!r}); a repeated step "
            "without 'input' finds its previous output under its own name"
        )
    return _variable_problem(var, ctx.workflow, step, ctx.available(step))


def _variable_problem(var: str, workflow: Workflow, step: str, before: set[str]) -> str | None:
    """Why ``var`` can never have a value for ``step`` when only the steps ``before``
    have run (None: it can)."""
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
