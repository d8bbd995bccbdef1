"""Listing jobs on a real, preloaded table: every typical list query uses an index
(no sequential scan of ``jobs``), and keyset pages list every matching job
exactly once, newest first, also where jobs share a ``created_at``.

The table holds 50,000 varied jobs (:func:`bench.preload.preload`), analysed as
after a day of work; the queries are those docs/operator.md shows at a million
(:data:`bench.listing_plans.typical`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from bench.listing_plans import prepared_filter, rare_error_text, typical
from bench.preload import preload
from typer.testing import CliRunner

from segue.cli import app
from segue.protocol.messages import JobStatus
from segue.store.listing import JobFilter, ParamStyle, list_query
from segue.store.repository import Store
from segue.store.urls import asyncpg_dsn, with_database

JOBS = 50_000
TYPICAL = typical(JOBS)


@pytest.fixture(scope="module")
def preloaded_url(postgres_url: str, migrated_template: str) -> Iterator[str]:
    """A migrated database of this module holding :data:`JOBS` varied jobs."""
    name = f"segue_listing_{uuid4().hex[:12]}"
    asyncio.run(admin(postgres_url, f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"'))
    url = with_database(postgres_url, name).render_as_string(hide_password=False)
    try:
        asyncio.run(preload(asyncpg_dsn(url), JOBS, varied=True))
        yield url
    finally:
        asyncio.run(admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
async def connection(preloaded_url: str) -> AsyncIterator[asyncpg.Connection]:
    opened = await asyncpg.connect(asyncpg_dsn(preloaded_url))
    await opened.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads
    )
    try:
        yield opened
    finally:
        await opened.close()


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan tree."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def plan_of(
    connection: asyncpg.Connection, job_filter: JobFilter, *, analyse: bool = False
) -> list[dict[str, Any]]:
    query = list_query(job_filter, ParamStyle.NUMBERED)
    options = "ANALYZE, FORMAT JSON" if analyse else "FORMAT JSON"
    async with connection.transaction():
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        raw = await connection.fetchval(f"EXPLAIN ({options}) {query.text}", *query.params)
    return list(plan_nodes(json.loads(raw)[0]["Plan"]))


@pytest.mark.parametrize("query", TYPICAL, ids=[query.title for query in TYPICAL])
async def test_every_typical_list_query_uses_an_index(
    connection: asyncpg.Connection, query: Any
) -> None:
    job_filter = await prepared_filter(connection, query, datetime.now(UTC))

    nodes = await plan_of(connection, job_filter)

    scans = [(node["Node Type"], node.get("Index Name")) for node in nodes]
    assert not any(kind == "Seq Scan" for kind, _ in scans), scans
    assert any(str(index).startswith("ix_jobs_") for _, index in scans), scans


@pytest.mark.parametrize(
    "statuses",
    [
        (JobStatus.SUCCEEDED, JobStatus.FAILED),
        (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT),
    ],
)
async def test_a_page_of_several_statuses_reads_a_page_per_status_not_every_match(
    connection: asyncpg.Connection, statuses: tuple[JobStatus, ...]
) -> None:
    job_filter = JobFilter(statuses=statuses, limit=50)

    nodes = await plan_of(connection, job_filter, analyse=True)

    scans = [node for node in nodes if "Scan" in node["Node Type"]]
    assert len(scans) == len(statuses)
    assert all(node["Node Type"] == "Index Scan" for node in scans)
    assert max(node["Actual Rows"] for node in scans) <= job_filter.limit + 1


PAGED = [
    ("no filter", JobFilter(limit=1000)),
    ("two statuses", JobFilter(statuses=(JobStatus.FAILED, JobStatus.TIMED_OUT), limit=97)),
    ("workflow and owner", JobFilter(workflow="quick_check", owner="user5", limit=10)),
    ("error text", JobFilter(error_text="workerlost", limit=50)),
    ("step and status", JobFilter(statuses=(JobStatus.RUNNING,), step="report", limit=7)),
]


@pytest.mark.parametrize(("title", "job_filter"), PAGED, ids=[title for title, _ in PAGED])
async def test_keyset_pages_list_every_matching_job_exactly_once(
    preloaded_url: str, connection: asyncpg.Connection, title: str, job_filter: JobFilter
) -> None:
    expected = await matching_ids(connection, job_filter)
    store = await Store.connect(preloaded_url, pool_size=1)
    listed: list[UUID] = []
    pages = 0
    try:
        page = await store.jobs_page(job_filter)
        listed += [job.job_id for job in page.jobs]
        while page.next is not None:
            pages += 1
            page = await store.jobs_page(replace(job_filter, after=page.next))
            listed += [job.job_id for job in page.jobs]
    finally:
        await store.close()

    assert len(expected) > 2 * job_filter.limit, f"{title}: too few jobs to page through"
    assert listed == expected
    assert pages == (len(expected) - 1) // job_filter.limit


async def test_jobs_that_share_a_created_at_are_split_across_pages_without_loss(
    preloaded_url: str, connection: asyncpg.Connection
) -> None:
    shared = await connection.fetchval(
        "SELECT created_at FROM jobs GROUP BY created_at HAVING count(*) = 3 LIMIT 1"
    )
    window = JobFilter(since=shared, until=shared + timedelta(microseconds=1), limit=2)
    store = await Store.connect(preloaded_url, pool_size=1)
    try:
        first = await store.jobs_page(window)
        second = await store.jobs_page(replace(window, after=first.next))
    finally:
        await store.close()

    ids = [job.job_id for job in first.jobs + second.jobs]
    assert len(ids) == len(set(ids)) == 3
    assert ids == sorted(ids, key=str, reverse=True)
    assert second.next is None


async def matching_ids(connection: asyncpg.Connection, job_filter: JobFilter) -> list[UUID]:
    """Every job the filter matches, newest first: written plainly, apart from listing."""
    conditions, params = ["TRUE"], []
    for sql, value in (
        ("status = ANY(${}::text[])", [s.value for s in job_filter.statuses] or None),
        ("workflow_name = ${}", job_filter.workflow),
        ("current_step = ${}", job_filter.step),
        ("owner = ${}", job_filter.owner),
        ("error::text ILIKE ${}", job_filter.error_text and f"%{job_filter.error_text}%"),
    ):
        if value is not None:
            params.append(value)
            conditions.append(sql.format(len(params)))
    rows = await connection.fetch(
        f"SELECT job_id FROM jobs WHERE {' AND '.join(conditions)}"
        " ORDER BY created_at DESC, job_id DESC",
        *params,
    )
    return [UUID(str(row["job_id"])) for row in rows]


def test_the_command_pages_through_jobs_as_json(preloaded_url: str) -> None:
    env = {"SEGUE_DATABASE_URL": preloaded_url}
    arguments = ["jobs", "list", "--status", "failed", "--workflow", "energy_plan", "--json"]

    first = CliRunner().invoke(app, [*arguments, "--limit", "20"], env=env)
    assert first.exit_code == 0, first.output
    page = json.loads(first.output)
    after = CliRunner().invoke(app, [*arguments, "--after", page["next_after"]], env=env)
    assert after.exit_code == 0, after.output
    following = json.loads(after.output)

    jobs = page["jobs"] + following["jobs"]
    assert len(page["jobs"]) == 20
    assert len(following["jobs"]) == 50
    assert len({job["job_id"] for job in jobs}) == 70
    assert {(job["status"], job["workflow"]) for job in jobs} == {("failed", "energy_plan")}
    created = [job["created_at"] for job in jobs]
    assert created == sorted(created, reverse=True)


def test_the_command_finds_a_job_by_a_text_of_its_error(preloaded_url: str) -> None:
    text = rare_error_text(JOBS).upper()

    result = CliRunner().invoke(
        app, ["jobs", "list", "--error", text, "--json"], env={"SEGUE_DATABASE_URL": preloaded_url}
    )

    assert result.exit_code == 0, result.output
    (job,) = json.loads(result.output)["jobs"]
    assert text.lower() in job["error"]["message"]
    assert json.loads(result.output)["next_after"] is None
