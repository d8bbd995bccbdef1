"""Where a map or parallel step stands, read from its attempts (pure queries).

A map step has one *slot* per item and a parallel step one per branch; a slot's
newest attempt says how it stands: live (running, dispatched or waiting for a
retry), succeeded, or failed for good (any other end: a retry or a replacement
for a lost worker is always added as a newer attempt). Only attempts of the
job's current run and of the step's current iteration count.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from segue.engine.state import Attempt, Job
from segue.engine.timers import find_step
from segue.protocol.messages import AttemptStatus, ErrorInfo, JsonObject
from segue.workflows.model import Step

MAP_FAILED = "map_failed"
"""More items of a map step failed than it tolerates."""
PARALLEL_FAILED = "parallel_failed"
"""More branches of a parallel step failed than it tolerates."""
ERRORS_KEY = "_errors"
"""Key of a parallel step's output holding the errors of tolerated failed branches
(step names start with a letter, so it never clashes with a branch)."""


@dataclass(frozen=True)
class Slots:
    """How the slots of one map or parallel step stand, by slot key (item or branch)."""

    outputs: Mapping[int | str, JsonObject]
    errors: Mapping[int | str, ErrorInfo]
    live: Collection[int | str]

    @property
    def finished(self) -> int:
        """Slots that succeeded or failed for good."""
        return len(self.outputs) + len(self.errors)


def newest_attempts(
    job: Job, steps: Collection[str], iteration: int
) -> dict[tuple[str, int | None], Attempt]:
    """The newest attempt of each slot of ``steps`` in this run and iteration."""
    newest: dict[tuple[str, int | None], Attempt] = {}
    for attempt in job.attempts:
        if attempt.run == job.run and attempt.step in steps and attempt.iteration == iteration:
            newest[(attempt.step, attempt.item_index)] = attempt
    return newest


def _slots(attempts: Mapping[int | str, Attempt]) -> Slots:
    """Sort slots by how their newest attempt stands."""
    outputs: dict[int | str, JsonObject] = {}
    errors: dict[int | str, ErrorInfo] = {}
    live: list[int | str] = []
    for key, attempt in attempts.items():
        if attempt.is_live:
            live.append(key)
        elif attempt.status is AttemptStatus.SUCCEEDED:
            outputs[key] = attempt.output or {}
        else:
            errors[key] = attempt.error or ErrorInfo(kind=str(attempt.status), message="")
    return Slots(outputs, errors, live)


def map_slots(job: Job, step: Step, iteration: int) -> Slots:
    """The items of map step ``step`` that have attempts, by index."""
    newest = newest_attempts(job, {step.name}, iteration)
    return _slots({index: a for (_, index), a in newest.items() if index is not None})


def parallel_slots(job: Job, step: Step, iteration: int) -> Slots:
    """The branches of parallel step ``step``, by name."""
    branches = step.parallel.branches if step.parallel is not None else []
    newest = newest_attempts(job, set(branches), iteration)
    return _slots({name: a for (name, _), a in newest.items()})


def pending_items(slots: Slots, count: int) -> list[int]:
    """Indexes of the items (of ``count``) that have no attempt yet, in order."""
    started = {*slots.outputs, *slots.errors, *slots.live}
    return [index for index in range(count) if index not in started]


def map_output(slots: Slots, count: int) -> JsonObject:
    """``{"items": [...]}`` in item order (null for a failed item), with ``"errors"``
    by index (as text: JSON keys) when some item failed."""
    output: JsonObject = {"items": [slots.outputs.get(index) for index in range(count)]}
    if slots.errors:
        output["errors"] = {str(key): _dump(error) for key, error in sorted(slots.errors.items())}
    return output


def parallel_output(step: Step, slots: Slots) -> JsonObject:
    """``{branch: output or null}``, with ``"_errors"`` by branch when some branch failed."""
    branches = step.parallel.branches if step.parallel is not None else []
    output: JsonObject = {name: slots.outputs.get(name) for name in branches}
    if slots.errors:
        output[ERRORS_KEY] = {str(key): _dump(error) for key, error in slots.errors.items()}
    return output


def too_many_failures(step: Step, slots: Slots, total: int, tolerated: int) -> ErrorInfo:
    """The error of a map or parallel step whose failed slots exceed ``tolerated``."""
    what = "items" if step.map is not None else "branches"
    shown = "; ".join(
        f"{_slot_name(key)}: {error.kind}: {error.message}"
        for key, error in list(slots.errors.items())[:3]
    )
    more = "; ..." if len(slots.errors) > 3 else ""
    message = (
        f"{len(slots.errors)} of {total} {what} of step {step.name!r} failed, more than "
        f"the {tolerated} tolerated ({shown}{more})"
    )
    kind = MAP_FAILED if step.map is not None else PARALLEL_FAILED
    return ErrorInfo(kind=kind, message=message, step=step.name)


def parallel_parent(job: Job, attempt: Attempt) -> Step | None:
    """The parallel step ``attempt`` runs a branch of (None: it runs its own step)."""
    if attempt.step == job.current_step or job.current_step is None:
        return None
    parent = find_step(job, job.current_step)
    if parent is None or parent.parallel is None or attempt.step not in parent.parallel.branches:
        return None
    return parent


def _slot_name(key: int | str) -> str:
    """``item 2`` or ``'costs'``."""
    return f"item {key}" if isinstance(key, int) else repr(key)


def _dump(error: ErrorInfo) -> JsonObject:
    """An error as JSON data."""
    return error.model_dump(mode="json")


def map_fraction(job: Job, step: Step, iteration: int, count: int) -> float:
    """How far a map step is: finished items plus the progress of running ones, over all."""
    newest = newest_attempts(job, {step.name}, iteration).values()
    finished = sum(1 for attempt in newest if not attempt.is_live)
    running = sum(attempt.progress or 0.0 for attempt in newest if attempt.is_live)
    return min(1.0, (finished + running) / count) if count else 1.0
