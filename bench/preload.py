"""(f): fill a Segue database with finished jobs and their history, straight in SQL.

Rows look like those of a finished ``bench_one`` job: one ``jobs`` row, one
``step_attempts`` row and five ``job_events`` rows (submitted, dispatched,
started, succeeded, job succeeded), spread over the past weeks. Columns are
named explicitly, so a nullable column added later does not break the load.
"""

from __future__ import annotations

import time

import asyncpg

BATCH = 100_000
PRELOADED_HASH = "bench-preloaded"

DEFINITION = """
INSERT INTO workflow_definitions (content_hash, name, version, definition, created_at)
VALUES ($1, 'bench_one', '1', '{"name": "bench_one", "preloaded": true}'::jsonb, now())
ON CONFLICT (content_hash) DO NOTHING
"""

# $1, $2: first and last job number of the batch; $3: total jobs (spacing in time).
SERIES = """
SELECT i,
       md5('job-' || i)::uuid AS job_id,
       md5('attempt-' || i)::uuid AS attempt_id,
       now() - interval '1 hour' - ($3 - i) * interval '2 seconds' AS t
FROM generate_series($1::bigint, $2::bigint) AS i
"""

JOBS = f"""
INSERT INTO jobs (job_id, workflow_name, workflow_version, workflow_hash, status, priority,
                  reference, params, outputs, crashes, error, current_step, created_at,
                  updated_at, finished_at, deadline_at, run, wake_at, last_seq)
SELECT job_id, 'bench_one', '1', '{PRELOADED_HASH}', 'succeeded', 5,
       NULL, '{{}}'::jsonb, '{{"only": {{}}}}'::jsonb, '{{}}'::jsonb, NULL, 'only', t,
       t + interval '50 ms', t + interval '50 ms', t + interval '1 hour', 1, NULL, 5
FROM ({SERIES}) AS s
"""

# Jobs as varied as a list filters them (docs/operator.md): every status (90%
# succeeded), four workflows and steps, 37 owners (every tenth job none), and
# for failed or timed-out jobs an error whose message holds a text of its own
# (md5 of the job number). Three jobs at a time share a created_at (the keyset
# tiebreak on job_id is exercised).
VARIED_SERIES = """
SELECT i,
       md5('job-' || i)::uuid AS job_id,
       md5('attempt-' || i)::uuid AS attempt_id,
       now() - interval '1 hour' - (($3 - i) / 3) * interval '6 seconds' AS t,
       CASE WHEN i % 100 = 0 THEN 'queued' WHEN i % 100 = 1 THEN 'running'
            WHEN i % 100 BETWEEN 2 AND 6 THEN 'failed'
            WHEN i % 100 IN (7, 8) THEN 'cancelled' WHEN i % 100 = 9 THEN 'timed_out'
            ELSE 'succeeded' END AS status,
       (ARRAY['energy_plan', 'scenario_study', 'quick_check', 'bench_one'])[1 + (i / 7) % 4]
         AS workflow,
       (ARRAY['prepare', 'optimise', 'simulate', 'report'])[1 + (i / 100) % 4] AS step,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || (i % 37) END AS owner
FROM generate_series($1::bigint, $2::bigint) AS i
"""

VARIED_JOBS = f"""
INSERT INTO jobs (job_id, workflow_name, workflow_version, workflow_hash, status, priority,
                  reference, params, outputs, crashes, error, current_step, created_at,
                  updated_at, finished_at, deadline_at, run, wake_at, last_seq, owner)
SELECT job_id, workflow, '1', '{PRELOADED_HASH}', status, 5,
       'ref-' || i, '{{}}'::jsonb, '{{}}'::jsonb, '{{}}'::jsonb,
       CASE WHEN status IN ('failed', 'timed_out') THEN jsonb_build_object(
         'kind', CASE WHEN status = 'timed_out' THEN 'JobTimedOut'
                      WHEN i % 3 = 0 THEN 'WorkerLost' ELSE 'DemoFailure' END,
         'message', 'step ' || step || ' failed in run ' || md5('error-' || i),
         'step', step) END,
       step, t, t + interval '50 ms',
       CASE WHEN status IN ('queued', 'running') THEN NULL ELSE t + interval '50 ms' END,
       t + interval '1 hour', 1, NULL, 5, owner
FROM ({VARIED_SERIES}) AS s
"""

ATTEMPTS = f"""
INSERT INTO step_attempts (attempt_id, job_id, ordinal, step, number, status, created_at,
                           due_at, dispatched_at, started_at, finished_at, last_seen_at,
                           worker_id, run, progress, progress_message, output, error,
                           item_index, iteration)
SELECT attempt_id, job_id, 1, 'only', 1, 'succeeded', t,
       NULL, t, t + interval '20 ms', t + interval '50 ms', t + interval '50 ms',
       'bench:1', 1, NULL, NULL, '{{}}'::jsonb, NULL,
       NULL, 1
FROM ({SERIES}) AS s
"""

EVENTS = f"""
INSERT INTO job_events (job_id, seq, type, data, at)
SELECT s.job_id, e.seq, e.type,
       CASE e.seq
         WHEN 1 THEN jsonb_build_object(
           'params', '{{}}'::jsonb, 'version', '1', 'priority', 5, 'workflow', 'bench_one',
           'reference', NULL, 'workflow_hash', '{PRELOADED_HASH}')
         WHEN 2 THEN jsonb_build_object(
           'step', 'only', 'queue', 'bench_instant', 'attempt', 1,
           'attempt_id', s.attempt_id::text)
         WHEN 3 THEN jsonb_build_object(
           'step', 'only', 'event', 'step_started', 'attempt', 1, 'worker_id', 'bench:1',
           'attempt_id', s.attempt_id::text, 'redelivered', false)
         WHEN 4 THEN jsonb_build_object(
           'next', NULL, 'step', 'only', 'output', '{{}}'::jsonb, 'attempt', 1,
           'attempt_id', s.attempt_id::text)
         ELSE jsonb_build_object('step', 'only')
       END,
       s.t + e.seq * interval '10 ms'
FROM ({SERIES}) AS s
CROSS JOIN (VALUES (1, 'job_submitted'), (2, 'step_dispatched'), (3, 'step_started'),
                   (4, 'step_succeeded'), (5, 'job_succeeded')) AS e(seq, type)
"""


async def preload(database_url: str, jobs: int, *, varied: bool = False) -> float:
    """Insert ``jobs`` finished jobs with their history, then VACUUM ANALYZE; seconds taken.

    ``varied``: jobs of every status, several workflows, owners and errors
    (:data:`VARIED_JOBS`) instead of identical succeeded ``bench_one`` jobs.
    """
    start = time.perf_counter()
    db = await asyncpg.connect(database_url)
    try:
        await db.execute(DEFINITION, PRELOADED_HASH)
        for first in range(1, jobs + 1, BATCH):
            last = min(jobs, first + BATCH - 1)
            async with db.transaction():
                for statement in (VARIED_JOBS if varied else JOBS, ATTEMPTS, EVENTS):
                    await db.execute(statement, first, last, jobs)
        for table in ("workflow_definitions", "jobs", "step_attempts", "job_events"):
            await db.execute(f"VACUUM (ANALYZE) {table}")
        await db.execute("CHECKPOINT")
    finally:
        await db.close()
    return time.perf_counter() - start
