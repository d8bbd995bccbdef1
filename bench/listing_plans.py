"""Query plans of ``segue jobs list`` on a large ``jobs`` table (docs/operator.md).

    python -m bench.listing_plans                 # 1,000,000 jobs
    python -m bench.listing_plans --jobs 50000 --out /tmp/plans.md

Creates (and afterwards drops, unless ``--keep``) a database of its own on the
local server, loads varied jobs with :func:`bench.preload.preload`, then for
each typical list query prints ``EXPLAIN (ANALYZE, BUFFERS)`` and the median
time of the real call (:func:`segue.store.listing.fetch_jobs_page`), plus how
long building the listing indexes of migration 0008 takes on that table.
The queries are the :data:`TYPICAL` filters, which the integration test
``integration_test/store/test_store_listing_plans.py`` also checks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.preload import preload
from segue.protocol.messages import JobStatus
from segue.store.listing import JobFilter, ParamStyle, fetch_jobs_page, list_query
from segue.store.migrate import upgrade_database
from segue.store.urls import asyncpg_dsn, with_database

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "segue_listing_plans"
LISTING_INDEXES = (
    "ix_jobs_created_at_job_id",
    "ix_jobs_status_created_at_job_id",
    "ix_jobs_workflow_name_created_at_job_id",
    "ix_jobs_current_step_created_at_job_id",
    "ix_jobs_owner_created_at_job_id",
    "ix_jobs_error_text",
)
TIMED_RUNS = 7


@dataclass(frozen=True)
class Typical:
    """A list query operators run: its title, and its filter at a given moment."""

    title: str
    make: Callable[[datetime], JobFilter]
    second_page: bool = False
    """Show page 2 (after the cursor of page 1) rather than page 1."""


def rare_error_text(jobs: int) -> str:
    """A text in the error of exactly one preloaded job (see ``VARIED_JOBS``)."""
    failed = next(i for i in range(jobs // 2, jobs) if i % 100 == 3)
    return hashlib.md5(f"error-{failed}".encode(), usedforsecurity=False).hexdigest()[:12]


def typical(jobs: int) -> list[Typical]:
    """The list queries shown in docs/operator.md and checked by the tests."""
    return [
        Typical("newest 50 jobs, no filter", lambda now: JobFilter()),
        Typical(
            "--status failed, page 2 (keyset)",
            lambda now: JobFilter(statuses=(JobStatus.FAILED,)),
            second_page=True,
        ),
        Typical(
            "--status failed --status timed_out, page 2 (keyset)",
            lambda now: JobFilter(statuses=(JobStatus.FAILED, JobStatus.TIMED_OUT)),
            second_page=True,
        ),
        Typical(
            "--workflow energy_plan --since 3d",
            lambda now: JobFilter(workflow="energy_plan", since=now - timedelta(days=3)),
        ),
        Typical(
            "--since 10d --until 9d (a time window)",
            lambda now: JobFilter(since=now - timedelta(days=10), until=now - timedelta(days=9)),
        ),
        Typical(
            "--step simulate --status running",
            lambda now: JobFilter(statuses=(JobStatus.RUNNING,), step="simulate"),
        ),
        Typical("--owner user7", lambda now: JobFilter(owner="user7")),
        Typical(
            "--error <text of one job's error>",
            lambda now: JobFilter(error_text=rare_error_text(jobs)),
        ),
        Typical(
            "--error workerlost (many matches)", lambda now: JobFilter(error_text="workerlost")
        ),
    ]


async def prepared_filter(
    connection: asyncpg.Connection, query: Typical, now: datetime
) -> JobFilter:
    """The filter of ``query``: for a second page, with the cursor page 1 ended with."""
    job_filter = query.make(now)
    if not query.second_page:
        return job_filter
    first = await fetch_jobs_page(connection, job_filter)
    assert first.next is not None, f"{query.title}: page 1 is the last page"
    return replace(job_filter, after=first.next)


async def explain(connection: asyncpg.Connection, job_filter: JobFilter) -> str:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of the page's statement, with a custom plan."""
    query = list_query(job_filter, ParamStyle.NUMBERED)
    async with connection.transaction():
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query.text}", *query.params)
    return "\n".join(row[0] for row in rows)


async def median_ms(connection: asyncpg.Connection, job_filter: JobFilter) -> float:
    """Median wall time of fetching the page, in milliseconds (after one warm-up)."""
    await fetch_jobs_page(connection, job_filter)
    times = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        await fetch_jobs_page(connection, job_filter)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def index_build_seconds(connection: asyncpg.Connection) -> dict[str, float]:
    """Drop each listing index and build it again as migration 0008 does: seconds."""
    took = {}
    for name in LISTING_INDEXES:
        definition = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", name
        )
        await connection.execute(f"DROP INDEX {name}")
        start = time.perf_counter()
        await connection.execute(definition)
        took[name] = time.perf_counter() - start
    await connection.execute("ANALYZE jobs")
    return took


async def report(server_url: str, jobs: int, keep: bool) -> str:
    """Load the jobs, measure, and return the report as Markdown."""
    url = with_database(server_url, DATABASE).render_as_string(hide_password=False)
    await _drop(server_url)
    await asyncio.to_thread(upgrade_database, url)
    loaded_s = await preload(asyncpg_dsn(url), jobs, varied=True)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await _json_codec(connection)
        lines = [f"{jobs:,} jobs loaded in {loaded_s:.0f} s (with attempts and history).", ""]
        lines += await _sizes(connection)
        builds = await index_build_seconds(connection)
        lines += ["", "| index | build time |", "|---|---|"]
        lines += [f"| `{name}` | {seconds:.2f} s |" for name, seconds in builds.items()]
        now = datetime.now(UTC)
        for query in typical(jobs):
            job_filter = await prepared_filter(connection, query, now)
            plan = await explain(connection, job_filter)
            took = await median_ms(connection, job_filter)
            lines += ["", f"### {query.title}", "", f"Median of {TIMED_RUNS} calls: {took:.2f} ms"]
            lines += ["", "```", plan, "```"]
    finally:
        await connection.close()
        if not keep:
            await _drop(server_url)
    return "\n".join(lines) + "\n"


async def _sizes(connection: asyncpg.Connection) -> list[str]:
    rows = await connection.fetch(
        "SELECT relname, pg_size_pretty(pg_relation_size(oid)) AS size FROM pg_class"
        " WHERE relname = 'jobs' OR relname = ANY($1::text[]) ORDER BY relname",
        list(LISTING_INDEXES),
    )
    return ["| relation | size |", "|---|---|"] + [f"| `{r[0]}` | {r[1]} |" for r in rows]


async def _json_codec(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads
    )


async def _drop(server_url: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    finally:
        await admin.close()


def main() -> None:
    """Parse the arguments, run, and print (or write) the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--server-url", default=DEFAULT_SERVER, help="any database on the server")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--out", type=Path, help="write the report here instead of stdout")
    args = parser.parse_args()
    text = asyncio.run(report(args.server_url, args.jobs, args.keep))
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
