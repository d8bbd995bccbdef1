"""Reader queries behind queue positions and ETAs (:mod:`segue.engine.estimates`).

Made only when a client asks (``GetJob.include_queue``) about a job with a
waiting step: nothing here runs on the write path, and no column or index
exists for it. The queries lean on indexes the write path keeps anyway:

- the live jobs (``ix_jobs_status_updated_at``) and their attempts
  (``uq_step_attempts_job_id_ordinal``) give the tasks waiting in a queue and
  the attempts running from it; their cost grows with the live jobs, not with
  the history;
- recent run times come from the most recently finished jobs of the workflow
  (the same status index, read backwards, stopping at ``samples``) and from
  live jobs that already ran the step.

A queue is served by steps of several workflows (and versions): which
``(workflow_hash, step)`` pairs feed it is read from the pinned definitions of
the live jobs (cached, see :class:`~segue.store.repository.DefinitionCache`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

import asyncpg

from segue.engine.estimates import QueueFigures
from segue.protocol.messages import AttemptStatus, JobStatus
from segue.workflows.model import Workflow

LIVE_JOB_STATUSES = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
WAITING = (AttemptStatus.SCHEDULED.value, AttemptStatus.DISPATCHED.value)
ALL_JOB_STATUSES = [status.value for status in JobStatus]
RECENT_S = 60.0
"""How lately a worker must have finished a task of the queue to count as one of
its workers, for steps without ``heartbeat_s`` (else that is the window)."""
DURATION_SAMPLES = 20
"""Finished attempts whose median run time stands for the step's."""


class Definitions(Protocol):
    """Pinned workflow definitions by content hash (see ``DefinitionCache``)."""

    async def get_many(
        self, connection: asyncpg.Connection, hashes: Iterable[str]
    ) -> dict[str, Workflow]: ...


@dataclass(frozen=True, slots=True, order=True)
class _Waiting:
    """A waiting attempt of the asking job, ordered by its place in the queue."""

    since: datetime
    ordinal: int
    status: str = field(compare=False)
    due_at: datetime | None = field(compare=False)


JOB_WAITING_SQL = """
SELECT j.priority, j.workflow_hash, j.workflow_name, a.step, a.ordinal, a.status,
    a.dispatched_at, a.due_at
FROM jobs j JOIN step_attempts a ON a.job_id = j.job_id
WHERE j.job_id = $1 AND j.status = ANY($2::text[]) AND a.status = ANY($3::text[])
ORDER BY a.ordinal
"""
"""The job's waiting attempts (scheduled for a retry, or dispatched to a queue)."""

QUEUE_COUNTS_SQL = """
WITH queue_steps AS (
    SELECT * FROM unnest($1::text[], $2::text[]) AS q(workflow_hash, step)
), live AS (
    SELECT a.status, a.worker_id, a.seen_at, a.dispatched_at, j.job_id, a.ordinal, j.priority
    FROM jobs j
    CROSS JOIN LATERAL (
        SELECT a.status, a.worker_id, COALESCE(a.last_seen_at, a.started_at) AS seen_at,
            a.dispatched_at, a.ordinal, a.step
        FROM step_attempts a
        WHERE a.job_id = j.job_id AND a.status IN ('dispatched', 'running')
        OFFSET 0
    ) a
    JOIN queue_steps q ON q.workflow_hash = j.workflow_hash AND q.step = a.step
    WHERE j.status = ANY($3::text[])
), recent_jobs AS (
    SELECT job_id, workflow_hash FROM jobs
    WHERE status = ANY($12::text[]) AND updated_at >= $11
    ORDER BY updated_at DESC LIMIT $13
), seen AS (
    SELECT a.worker_id
    FROM recent_jobs j
    CROSS JOIN LATERAL (
        SELECT a.worker_id, a.step FROM step_attempts a
        WHERE a.job_id = j.job_id AND a.finished_at >= $11 AND a.worker_id IS NOT NULL
        OFFSET 0
    ) a
    JOIN queue_steps q ON q.workflow_hash = j.workflow_hash AND q.step = a.step
    UNION ALL
    SELECT worker_id FROM live
    WHERE status = 'running' AND ($10::timestamptz IS NULL OR seen_at >= $10)
)
SELECT
    count(*) FILTER (WHERE status = 'dispatched') AS waiting,
    count(*) FILTER (WHERE status = 'dispatched' AND (priority > $4 OR (priority = $4
        AND (dispatched_at, job_id, ordinal) < ($5::timestamptz, $6::uuid, $7::int4))))
        AS ahead_first,
    count(*) FILTER (WHERE status = 'dispatched' AND (priority > $4 OR (priority = $4
        AND (dispatched_at, job_id, ordinal) < ($8::timestamptz, $6::uuid, $9::int4))))
        AS ahead_last,
    count(*) FILTER (WHERE status = 'running'
        AND ($10::timestamptz IS NULL OR seen_at >= $10)) AS busy,
    (SELECT count(DISTINCT worker_id) FROM seen) AS workers
FROM live
"""
"""Tasks of the queue waiting, those before the job's first and last waiting task
(higher priority first, then by dispatch time; ties by job and ordinal), the
attempts of the queue running and heard from since $10 (NULL: all), and the
workers that ran them or finished one since $11, in the $13 jobs updated last
(a job's ``updated_at`` is never before its attempts' ends). The attempts of
each job are looked up by its id (``LATERAL ... OFFSET 0`` keeps the planner
from scanning every attempt ever stored instead)."""

DURATIONS_SQL = """
(SELECT a.finished_at, extract(epoch FROM a.finished_at - a.started_at)::float8 AS run_s
 FROM jobs j JOIN step_attempts a ON a.job_id = j.job_id
 WHERE j.status = 'succeeded' AND j.workflow_name = $1 AND a.step = $2
   AND a.status = 'succeeded' AND a.started_at IS NOT NULL
 ORDER BY j.updated_at DESC LIMIT $3)
UNION ALL
(SELECT a.finished_at, extract(epoch FROM a.finished_at - a.started_at)::float8 AS run_s
 FROM (SELECT job_id FROM jobs WHERE status = ANY($4::text[]) AND workflow_name = $1
       ORDER BY updated_at DESC LIMIT $5) j
 CROSS JOIN LATERAL (
     SELECT a.finished_at, a.started_at FROM step_attempts a
     WHERE a.job_id = j.job_id AND a.step = $2 AND a.status = 'succeeded'
         AND a.started_at IS NOT NULL
     OFFSET 0
 ) a
 ORDER BY a.finished_at DESC LIMIT $3)
"""
"""Run times of the step's attempts that succeeded, in the workflow's most recently
finished jobs and in its $5 live ones updated last."""

LOOKED_AT = 1000
"""Jobs looked at, at most, for recent workers and for runs in live jobs."""


async def queue_figures(
    connection: asyncpg.Connection,
    definitions: Definitions,
    job_id: UUID,
    now: datetime,
    samples: int = DURATION_SAMPLES,
) -> QueueFigures | None:
    """The figures for the job's first waiting step, None if no step of it waits.

    Runs in the caller's transaction, which it makes plan each query for the
    values at hand: the store's connections plan generically (right for its
    write path), and a generic plan cannot tell that few jobs are live or
    were updated in the last minute, so it would scan them all.
    """
    await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    rows = await connection.fetch(JOB_WAITING_SQL, job_id, LIVE_JOB_STATUSES, list(WAITING))
    if not rows:
        return None
    first = rows[0]
    workflow_hash, step_name = first["workflow_hash"], first["step"]
    own = (await definitions.get_many(connection, [workflow_hash]))[workflow_hash]
    try:
        step = own.step(step_name)
    except KeyError:  # not a step of its own definition: nothing to go by
        return None
    queue = step.queue or step_name
    waiting = sorted(_waiting(row, now) for row in rows if row["step"] == step_name)
    hashes = await connection.fetch(
        "SELECT DISTINCT workflow_hash FROM jobs WHERE status = ANY($1::text[])",
        LIVE_JOB_STATUSES,
    )
    live = await definitions.get_many(connection, [row["workflow_hash"] for row in hashes])
    pairs = steps_on_queue({**live, workflow_hash: own}, queue)
    seen_since = None if step.heartbeat_s is None else now - timedelta(seconds=step.heartbeat_s)
    finished_since = now - timedelta(seconds=step.heartbeat_s or RECENT_S)
    counts = await connection.fetchrow(
        QUEUE_COUNTS_SQL,
        [h for h, _ in pairs],
        [s for _, s in pairs],
        LIVE_JOB_STATUSES,
        first["priority"],
        waiting[0].since,
        job_id,
        waiting[0].ordinal,
        waiting[-1].since,
        waiting[-1].ordinal,
        seen_since,
        finished_since,
        ALL_JOB_STATUSES,
        LOOKED_AT,
    )
    durations = await recent_durations(connection, first["workflow_name"], step_name, samples)
    scheduled = [w.due_at for w in waiting if w.status == "scheduled" and w.due_at is not None]
    return QueueFigures(
        step=step_name,
        queue=queue,
        ahead_first=counts["ahead_first"],
        ahead_last=counts["ahead_last"],
        waiting=counts["waiting"],
        tasks=len(waiting),
        busy=counts["busy"],
        workers=counts["workers"],
        durations_s=durations,
        due_at=max(scheduled) if len(scheduled) == len(waiting) else None,
    )


def _waiting(row: asyncpg.Record, now: datetime) -> _Waiting:
    """A waiting attempt: a retry is placed as if queued when it is due."""
    since = row["dispatched_at"] if row["status"] == "dispatched" else row["due_at"]
    return _Waiting(since or now, row["ordinal"], row["status"], row["due_at"])


def steps_on_queue(workflows: dict[str, Workflow], queue: str) -> list[tuple[str, str]]:
    """``(workflow_hash, step)`` of every step of these definitions that feeds ``queue``."""
    return sorted(
        (content_hash, step.name)
        for content_hash, workflow in workflows.items()
        for step in workflow.steps
        if step.queue == queue
    )


async def recent_durations(
    connection: asyncpg.Connection, workflow: str, step: str, samples: int
) -> Sequence[float]:
    """Run times (start to finish, seconds) of the step's ``samples`` latest successes."""
    rows = await connection.fetch(
        DURATIONS_SQL, workflow, step, samples, LIVE_JOB_STATUSES, LOOKED_AT
    )
    latest = sorted(rows, key=lambda row: row["finished_at"], reverse=True)[:samples]
    return [max(0.0, row["run_s"]) for row in latest]
