"""Moves of whole steps: enter one, finish one (then repeat it or go on), fail one.

- A task step runs one attempt at a time: retries and replacements of lost
  attempts follow each other.
- A map step runs one slot per item of its list, at most ``max_concurrency`` at
  a time, each slot with its own attempts under the step's retry policy; when
  every item has finished it succeeds with ``{"items": [...]}`` (plus
  ``"errors"``). An empty list succeeds at once; a missing or non-list value
  fails the step (``map_error``).
- A parallel step dispatches all its branch steps at once and joins when every
  branch has finished: its output is ``{branch: output or null}`` (plus
  ``"_errors"``), and each branch's output is also stored under its own name.
- More failed items or branches than tolerated fail the step at once: the other
  live attempts are stopped and ``on_failure`` (or the job's failure) follows.
- A step with ``repeat`` runs again (iteration + 1, attempts numbered from 1)
  after each success until its ``until`` holds; its newest output is
  ``outputs.<step>`` meanwhile. ``max_iterations`` without ``until`` fails it
  (``loop_exhausted``).
- A step whose ``input`` names a missing value fails before any attempt
  (``input_error``), as does an output over the step's limit (``output_too_large``,
  never retried).
"""

from __future__ import annotations

from typing import Any

from segue.engine.draft import Draft, attempt_data
from segue.engine.fanout import (
    map_output,
    map_slots,
    parallel_output,
    parallel_parent,
    parallel_slots,
    pending_items,
    too_many_failures,
)
from segue.engine.inputs import WORKFLOW_ERROR, map_items, output_problem, step_problem
from segue.engine.state import Attempt, Job
from segue.engine.timers import find_step
from segue.engine.transitions import (
    abort_live,
    dispatch,
    end_job,
    may_retry,
    retry,
    settle,
)
from segue.protocol.messages import AttemptStatus, ErrorInfo, JobStatus, JsonObject
from segue.workflows.conditions import describe, evaluate, next_step
from segue.workflows.model import Condition, RepeatSpec, Step

FAILURE_KEY = "_failure"
"""Key in ``Job.outputs`` (and so in task inputs) describing the failure an
``on_failure`` step handles. Step names start with a letter, so it never clashes."""
LOOP_EXHAUSTED = "loop_exhausted"
"""A repeated step ran ``max_iterations`` times without reaching its ``until``."""


# --- entering a step -------------------------------------------------------------------


def enter_step(draft: Draft, step: Step, iteration: int = 1) -> None:
    """Make ``step`` the current step and start its work (its ``iteration``-th run)."""
    draft.change(current_step=step.name)
    if step.parallel is not None:
        _enter_parallel(draft, step, iteration)
        return
    problem = step_problem(draft.job, step)
    if problem is not None:
        fail_step(draft, step, problem)
    elif step.map is not None:
        advance_map(draft, step, iteration)
    else:
        dispatch(draft, step, 1, iteration=iteration)


def _enter_parallel(draft: Draft, step: Step, iteration: int) -> None:
    """Dispatch every branch at once, unless one cannot start (then the step fails)."""
    branches = [find_step(draft.job, name) for name in _branch_names(step)]
    for name, branch in zip(_branch_names(step), branches, strict=True):
        problem = _branch_problem(draft.job, step, name, branch)
        if problem is not None:
            fail_step(draft, step, problem)
            return
    for branch in branches:
        if branch is not None:
            dispatch(draft, branch, 1, iteration=iteration)


def _branch_names(step: Step) -> list[str]:
    """The branches of a parallel step (none for any other step)."""
    return step.parallel.branches if step.parallel is not None else []


def _branch_problem(job: Job, step: Step, name: str, branch: Step | None) -> ErrorInfo | None:
    """Why branch ``name`` of ``step`` cannot start (None: it can)."""
    if branch is None or branch.parallel is not None or branch.map is not None:
        message = f"branch {name!r} of step {step.name!r} is not a plain task step"
        return ErrorInfo(kind=WORKFLOW_ERROR, message=message, step=step.name)
    problem = step_problem(job, branch)
    return None if problem is None else problem.model_copy(update={"step": step.name})


# --- attempts ending -------------------------------------------------------------------


def attempt_succeeded(draft: Draft, attempt: Attempt, output: JsonObject) -> None:
    """Store the attempt's output, then advance its step (or its map or parallel step)."""
    step = draft.job.workflow.step(attempt.step)
    problem = output_problem(draft.job.workflow, step, output, attempt.item_index)
    if problem is not None:
        failed = settle(draft, attempt, AttemptStatus.FAILED, error=problem)
        attempt_failed(draft, failed, problem, retryable=False)
        return
    done = settle(draft, attempt, AttemptStatus.SUCCEEDED, output=output)
    if not _advance_part(draft, step, done, "succeeded", output=output):
        complete_step(draft, step, output, attempt.iteration, attempt_data(done))


def attempt_failed(draft: Draft, attempt: Attempt, error: ErrorInfo, retryable: bool) -> None:
    """Retry a failed attempt's work, or count it failed for good: a map item, a branch,
    or the step itself (then ``on_failure`` or the job fails)."""
    step = draft.job.workflow.step(attempt.step)
    if may_retry(step.retry, attempt, error, retryable):
        retry(draft, step, attempt, error)
        return
    if not _advance_part(draft, step, attempt, "failed", error=error.model_dump(mode="json")):
        fail_step(draft, step, error, attempt_data(attempt))


def _advance_part(draft: Draft, step: Step, attempt: Attempt, outcome: str, **data: Any) -> bool:
    """Record how a map item or parallel branch ended and advance its step.

    Returns False for an attempt of a plain step, which the caller ends itself.
    """
    parent = parallel_parent(draft.job, attempt)
    if attempt.item_index is not None:
        draft.record(f"map_item_{outcome}", **attempt_data(attempt), **data)
        advance_map(draft, step, attempt.iteration)
    elif parent is not None:
        draft.record(f"branch_{outcome}", **attempt_data(attempt), **data)
        advance_parallel(draft, parent, attempt.iteration)
    else:
        return False
    return True


# --- map and parallel steps ------------------------------------------------------------


def advance_map(draft: Draft, step: Step, iteration: int) -> None:
    """Dispatch items while there is room, fail on too many failures, finish when all are."""
    items = map_items(draft.job, step)
    if isinstance(items, ErrorInfo) or step.map is None:  # cannot change while the step runs
        fail_step(draft, step, items if isinstance(items, ErrorInfo) else _not_a_map(step))
        return
    slots = map_slots(draft.job, step, iteration)
    if len(slots.errors) > step.map.tolerate_failures:
        error = too_many_failures(step, slots, len(items), step.map.tolerate_failures)
        _give_up(draft, step, error)
        return
    room = step.map.max_concurrency - len(slots.live)
    for index in pending_items(slots, len(items))[: max(room, 0)]:
        dispatch(draft, step, 1, iteration=iteration, item_index=index)
    if slots.finished == len(items):
        complete_step(draft, step, map_output(slots, len(items)), iteration)


def _not_a_map(step: Step) -> ErrorInfo:
    """The error of a step advanced as a map that has none (a bug)."""
    return ErrorInfo(kind=WORKFLOW_ERROR, message=f"step {step.name!r} is no map", step=step.name)


def advance_parallel(draft: Draft, step: Step, iteration: int) -> None:
    """Join when every branch has finished; fail on too many failed branches."""
    branches = _branch_names(step)
    slots = parallel_slots(draft.job, step, iteration)
    tolerated = step.parallel.tolerate_failures if step.parallel is not None else 0
    if len(slots.errors) > tolerated:
        draft.change(outputs={**draft.job.outputs, **slots.outputs})
        _give_up(draft, step, too_many_failures(step, slots, len(branches), tolerated))
    elif slots.finished == len(branches):
        draft.change(outputs={**draft.job.outputs, **slots.outputs})
        complete_step(draft, step, parallel_output(step, slots), iteration)


def _give_up(draft: Draft, step: Step, error: ErrorInfo) -> None:
    """Stop the step's other live attempts, then fail it."""
    abort_live(draft, AttemptStatus.CANCELLED, f"step {step.name!r} failed")
    fail_step(draft, step, error)


# --- finishing a step ------------------------------------------------------------------


def complete_step(
    draft: Draft, step: Step, output: JsonObject, iteration: int, data: JsonObject | None = None
) -> None:
    """Store the step's output, then repeat it or go on to the next step (``data``: the
    fields naming the attempt that made it, in the ``step_succeeded`` record)."""
    draft.change(outputs={**draft.job.outputs, step.name: output})
    record = {"step": step.name} if data is None else data
    if step.repeat is None:
        _go_on(draft, step, record, output)
    else:
        _after_iteration(draft, step, step.repeat, iteration, {**record, "output": output})


def _go_on(draft: Draft, step: Step, record: JsonObject, output: JsonObject) -> None:
    """Record the success and continue with the step ``next`` chooses."""
    target, error = _choose_next(draft.job, step)
    draft.record("step_succeeded", **record, output=output, next=target)
    if error is not None:
        end_job(draft, JobStatus.FAILED, "job_failed", error=error)
    else:
        goto(draft, step.name, target)


def _after_iteration(
    draft: Draft, step: Step, repeat: RepeatSpec, iteration: int, record: JsonObject
) -> None:
    """Go on when ``until`` holds; else run the step again, or fail it once it has run
    ``max_iterations`` times (``record``: the success record so far)."""
    until, error = _holds(draft.job, step, repeat.until)
    record = {**record, "iteration": iteration, "until_met": until}
    output = record.pop("output")
    if until:
        _go_on(draft, step, record, output)
    elif error is None and iteration < repeat.max_iterations:
        draft.record("step_succeeded", **record, output=output, next=step.name)
        draft.record("step_repeated", step=step.name, iteration=iteration + 1)
        enter_step(draft, step, iteration + 1)
    else:
        draft.record("step_succeeded", **record, output=output, next=None)
        if error is None:
            message = (
                f"step {step.name!r} ran {iteration} times without reaching "
                f"its 'until' ({describe(repeat.until)})"
            )
            error = ErrorInfo(kind=LOOP_EXHAUSTED, message=message, step=step.name)
        fail_step(draft, step, error)


def _holds(job: Job, step: Step, condition: Condition) -> tuple[bool, ErrorInfo | None]:
    """Whether ``condition`` holds, or why it could not be evaluated."""
    try:
        return evaluate(condition, job.params, job.outputs), None
    except Exception as exc:  # a condition must not crash the engine: fail the job instead
        message = f"cannot evaluate 'until' of step {step.name!r}: {exc}"
        return False, ErrorInfo(kind="condition_error", message=message, step=step.name)


def _choose_next(job: Job, step: Step) -> tuple[str | None, ErrorInfo | None]:
    """The step after ``step``, or why it could not be chosen (a broken condition)."""
    try:
        return next_step(step, job.params, job.outputs), None
    except Exception as exc:  # a condition must not crash the engine: fail the job instead
        message = f"cannot choose the step after {step.name!r}: {exc}"
        return None, ErrorInfo(kind="condition_error", message=message, step=step.name)


def goto(draft: Draft, origin: str, target: str | None) -> None:
    """Continue with step ``target`` after ``origin``; None ends the job successfully."""
    if target is None:
        output = draft.job.outputs.get(origin)
        end_job(draft, JobStatus.SUCCEEDED, "job_succeeded", output=output)
        return
    step = find_step(draft.job, target)
    if step is None:
        message = f"step {origin!r} leads to unknown step {target!r}"
        error = ErrorInfo(kind=WORKFLOW_ERROR, message=message, step=origin)
        end_job(draft, JobStatus.FAILED, "job_failed", error=error)
        return
    enter_step(draft, step)


def fail_step(draft: Draft, step: Step, error: ErrorInfo, data: JsonObject | None = None) -> None:
    """``step`` failed for good: continue with its ``on_failure`` step, or fail the job.

    The failure is stored in ``outputs["_failure"]``, so the ``on_failure`` step
    and every later one see it in their inputs (also on retries).
    """
    dumped = error.model_dump(mode="json")
    draft.record("step_failed", **({"step": step.name} if data is None else data), error=dumped)
    if step.on_failure is None:
        end_job(draft, JobStatus.FAILED, "job_failed", error=error)
        return
    failure = {"step": step.name, "error": dumped}
    draft.change(outputs={**draft.job.outputs, FAILURE_KEY: failure})
    goto(draft, step.name, step.on_failure)
