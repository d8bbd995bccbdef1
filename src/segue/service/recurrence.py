"""The pure part of recurring jobs: what a due schedule submits, and what firing
it leaves behind. The scheduler (:mod:`segue.service.scheduler`) does the I/O.

- A fired schedule's job id is derived from the schedule's name and the due
  time it fires for (UUID version 5): firing the same due time again, by
  another replica or after a failed commit, submits the same job id, which
  the engine takes as a duplicate. One due time therefore makes at most one job.
- Missed runs do not pile up: a schedule found due fires once, for its stored
  ``next_due_at`` (the earliest due time it missed), and is then due next at the
  first time after *now* that its cron expression matches. An orchestrator that
  was down all night runs a five-minute schedule once when it comes back, not
  a hundred times.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID, uuid5

from segue.engine.events import JobSubmitted
from segue.service.applier import Applied
from segue.store.schedules import Fired, NewSchedule, ScheduleRow, ScheduleSource
from segue.workflows.cron import CronError, next_due
from segue.workflows.loader import Catalog
from segue.workflows.model import ScheduleSpec

SCHEDULED_JOBS = UUID("6f1d3b7e-5f0a-4c57-9a59-2f0c8d6b1e42")
"""Namespace of the UUID-5 job ids of scheduled jobs (fixed: changing it would let a
retry of one due time submit a second job)."""
REFERENCE_PREFIX = "schedule:"


class FiredOutcome(StrEnum):
    """What became of a fired schedule's submission (a label of the metric)."""

    SUBMITTED = "submitted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


def scheduled_job_id(name: str, due_at: datetime) -> UUID:
    """The job id of schedule ``name``'s run due at ``due_at`` (always the same)."""
    return uuid5(SCHEDULED_JOBS, f"{name}@{_utc_text(due_at)}")


def scheduled_reference(name: str, due_at: datetime) -> str:
    """The reference a scheduled job carries: ``schedule:<name>@<due time, UTC>``."""
    return f"{REFERENCE_PREFIX}{name}@{_utc_text(due_at)}"


def submission(schedule: ScheduleRow, catalog: Catalog, secret: str | None) -> JobSubmitted:
    """The submission of ``schedule``'s job for its due time, as a client's would be
    (an unknown workflow or invalid params are refused by the engine). The job
    belongs to the schedule's owner (None: open to every user)."""
    loaded = catalog.get(schedule.workflow)
    due_at = schedule.next_due_at
    return JobSubmitted(
        job_id=scheduled_job_id(schedule.name, due_at),
        workflow=None if loaded is None else loaded.workflow,
        workflow_hash="" if loaded is None else loaded.content_hash,
        params=dict(schedule.params),
        priority=schedule.priority,
        reference=scheduled_reference(schedule.name, due_at),
        workflow_name=schedule.workflow,
        secret=secret,
        owner=schedule.owner,
    )


def outcome(applied: Applied) -> FiredOutcome:
    """Whether the submission made a job, found it made already, or was refused."""
    if applied.decision.rejected is not None:
        return FiredOutcome.REFUSED
    if applied.decision.ignored is not None:
        return FiredOutcome.DUPLICATE
    return FiredOutcome.SUBMITTED


def fired(schedule: ScheduleRow, job_id: UUID, applied: Applied, now: datetime) -> Fired:
    """What firing ``schedule`` at ``now`` leaves in its row: the job (unless refused,
    with the reason) and the next due time after ``now`` (None, with the reason,
    if it cannot be computed: the schedule is then paused)."""
    refused = applied.decision.rejected
    try:
        following: datetime | None = next_due(schedule.cron, schedule.timezone, now)
    except CronError as exc:
        following, refused = None, f"paused: {exc}"
    return Fired(
        name=schedule.name,
        due_at=schedule.next_due_at,
        fired_at=now,
        next_due_at=following,
        job_id=None if applied.decision.rejected is not None else job_id,
        error=refused,
    )


def definition_hash(spec: ScheduleSpec) -> str:
    """SHA-256 (hex) of a file schedule's canonical JSON: unchanged definition, same hash.

    A schedule without an owner leaves the key out, so it keeps the hash it had
    before schedules had owners (a new hash would store it again, undoing a pause).
    """
    data = spec.model_dump(mode="json", exclude={"owner"} if spec.owner is None else None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_schedules(specs: tuple[ScheduleSpec, ...], now: datetime) -> list[NewSchedule]:
    """The workflow file's schedules as rows to store, each due next after ``now``."""
    return [
        NewSchedule(
            name=spec.name,
            workflow=spec.workflow,
            cron=spec.cron,
            timezone=spec.timezone,
            params=dict(spec.params),
            priority=spec.priority,
            enabled=spec.enabled,
            next_due_at=next_due(spec.cron, spec.timezone, now),
            source=ScheduleSource.FILE,
            definition_hash=definition_hash(spec),
            owner=spec.owner,
        )
        for spec in specs
    ]


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
