"""Checks of the recurring jobs a workflow file defines (``schedules``).

The model checks each schedule's own fields (cron expression, time zone,
priority); these checks need the workflows too: schedule names are unique, each
names a workflow of the file, and its params are valid for that workflow, as a
submission's would have to be. The same checks serve ``segue schedules add``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from segue.workflows.lint import Problem
from segue.workflows.model import Workflow, WorkflowFile
from segue.workflows.parameters import ParameterError, resolve_params


def schedule_problems(file: WorkflowFile) -> list[Problem]:
    """Every problem of the file's schedules (empty: they are fine)."""
    workflows = {workflow.name: workflow for workflow in file.workflows}
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for index, schedule in enumerate(file.schedules):
        path = f"$.schedules[{index}]"
        if schedule.name in first:
            earlier = f"$.schedules[{first[schedule.name]}]"
            duplicate = f"duplicate schedule name {schedule.name!r} (also at {earlier})"
            problems.append(Problem(f"{path}.name", duplicate))
        first.setdefault(schedule.name, index)
        unknown = unknown_workflow(schedule.workflow, workflows)
        if unknown is not None:
            problems.append(Problem(f"{path}.workflow", unknown))
            continue
        problems.extend(
            Problem(f"{path}.params", problem)
            for problem in params_problems(workflows[schedule.workflow], schedule.params)
        )
    return problems


def unknown_workflow(name: str, workflows: Mapping[str, Workflow] | Iterable[str]) -> str | None:
    """Why ``name`` is not a workflow of ``workflows``, or None when it is one."""
    known = list(workflows)
    if name in known:
        return None
    return f"unknown workflow {name!r} (workflows: {', '.join(known) or 'none'})"


def params_problems(workflow: Workflow, params: Mapping[str, Any]) -> list[str]:
    """Why ``params`` would make a submission of ``workflow`` fail (empty: they are fine)."""
    try:
        resolve_params(workflow, params)
    except ParameterError as exc:
        return list(exc.problems)
    return []
