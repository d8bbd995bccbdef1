"""The SQL of a job list page, built from a filter without a database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from segue.protocol.messages import JobStatus
from segue.store.listing import (
    Cursor,
    JobFilter,
    ParamStyle,
    like_escaped,
    list_query,
    page_from_rows,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
JOB = UUID("7d6f1c4e-2b7a-4c3e-9a51-0f6c2d8e4b10")


def placeholders(text: str) -> list[int]:
    return [int(number) for number in re.findall(r"\$(\d+)", text)]


def row(n: int, created_at: datetime, **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "job_id": UUID(int=n),
        "workflow_name": "energy_plan",
        "workflow_version": "1",
        "status": "failed",
        "current_step": "simulate",
        "priority": 5,
        "reference": None,
        "owner": "alice",
        "run": 1,
        "created_at": created_at,
        "updated_at": created_at,
        "finished_at": None,
        "error": {"kind": "DemoFailure", "message": "boom", "step": "simulate"},
    }
    return base | overrides


def test_without_filters_every_job_is_listed_newest_first_one_row_beyond_the_page() -> None:
    query = list_query(JobFilter(limit=20))

    assert " WHERE " not in query.text
    assert query.text.endswith("ORDER BY created_at DESC, job_id DESC LIMIT $1")
    assert query.params == (21,)


def test_never_offset_and_never_the_secret_params_or_outputs() -> None:
    text = list_query(JobFilter(statuses=(JobStatus.FAILED, JobStatus.QUEUED))).text.lower()

    for word in ("offset", "secret", "params", "outputs"):
        assert word not in text


def test_each_filter_becomes_one_condition_with_its_value_as_a_parameter() -> None:
    job_filter = JobFilter(
        statuses=(JobStatus.RUNNING,),
        workflow="energy_plan",
        since=NOW - timedelta(hours=2),
        until=NOW,
        step="simulate",
        error_text="timeout",
        owner="alice",
        after=Cursor(NOW - timedelta(minutes=5), JOB),
    )

    query = list_query(job_filter)

    assert "status = $1" in query.text
    assert "workflow_name = $2" in query.text
    assert "current_step = $3" in query.text
    assert "owner = $4" in query.text
    assert "created_at >= $5::timestamptz" in query.text
    assert "created_at < $6::timestamptz" in query.text
    assert "ILIKE $7" in query.text
    assert "(created_at, job_id) < ($8::timestamptz, $9::uuid)" in query.text
    assert query.params == (
        "running",
        "energy_plan",
        "simulate",
        "alice",
        NOW - timedelta(hours=2),
        NOW,
        "%timeout%",
        NOW - timedelta(minutes=5),
        str(JOB),
        51,
    )


def test_the_error_condition_is_the_indexed_expression() -> None:
    from segue.store.tables import ERROR_TEXT_SQL, jobs

    index = next(index for index in jobs.indexes if index.name == "ix_jobs_error_text")
    text = list_query(JobFilter(error_text="x")).text

    assert f"({ERROR_TEXT_SQL}) ILIKE" in text
    assert ERROR_TEXT_SQL in str(index.expressions[0])


def test_several_statuses_are_one_limited_branch_each_then_the_newest_of_those() -> None:
    job_filter = JobFilter(statuses=(JobStatus.FAILED, JobStatus.TIMED_OUT), owner="bob", limit=10)

    query = list_query(job_filter)

    assert query.text.count("UNION ALL") == 1
    assert query.text.count("LIMIT") == 3
    assert placeholders(query.text) == list(range(1, len(query.params) + 1))
    assert query.params == ("failed", "bob", 11, "timed_out", "bob", 11, 11)


def test_user_text_never_reaches_the_sql_text() -> None:
    hostile = "'; DROP TABLE jobs; --"
    job_filter = JobFilter(workflow=hostile, step=hostile, owner=hostile, error_text=hostile)

    query = list_query(job_filter)

    assert "DROP" not in query.text
    assert hostile in query.params


def test_pyformat_style_writes_one_percent_s_per_parameter_for_psycopg2() -> None:
    job_filter = JobFilter(statuses=(JobStatus.FAILED, JobStatus.CANCELLED), workflow="w")

    query = list_query(job_filter, ParamStyle.PYFORMAT)

    assert "$" not in query.text
    assert query.text.count("%s") == len(query.params)


@pytest.mark.parametrize(
    ("typed", "escaped"),
    [("50%", "50\\%"), ("a_b", "a\\_b"), ("c:\\temp", "c:\\\\temp"), ("plain", "plain")],
)
def test_like_wildcards_in_the_error_text_are_taken_literally(typed: str, escaped: str) -> None:
    assert like_escaped(typed) == escaped
    assert list_query(JobFilter(error_text=typed)).params[0] == f"%{escaped}%"


def test_a_cursor_token_reads_back_as_the_same_cursor() -> None:
    cursor = Cursor(datetime(2026, 12, 3, 8, 30, 1, 123456, tzinfo=UTC), JOB)

    token = cursor.token()

    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert Cursor.from_token(token) == cursor


def test_a_cursor_keeps_the_instant_whatever_the_offset_it_was_made_in() -> None:
    cet = timezone(timedelta(hours=1))
    cursor = Cursor(datetime(2026, 12, 3, 9, 30, tzinfo=cet), JOB)

    assert Cursor.from_token(cursor.token()).created_at == datetime(2026, 12, 3, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("token", ["", "abc", "bm90IGEgY3Vyc29y", "!!!", "MjAyNnx4"])
def test_anything_else_is_not_a_cursor(token: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        Cursor.from_token(token)


def test_a_full_page_ends_with_the_cursor_of_its_last_job() -> None:
    rows = [row(n, NOW - timedelta(seconds=n)) for n in range(1, 5)]

    page = page_from_rows(rows, limit=3)

    assert [job.job_id for job in page.jobs] == [UUID(int=1), UUID(int=2), UUID(int=3)]
    assert page.next == Cursor(NOW - timedelta(seconds=3), UUID(int=3))


@pytest.mark.parametrize("count", [0, 2, 3])
def test_the_last_page_has_no_cursor(count: int) -> None:
    rows = [row(n, NOW - timedelta(seconds=n)) for n in range(1, count + 1)]

    assert page_from_rows(rows, limit=3).next is None


def test_a_summary_reads_the_error_and_converts_times_to_utc() -> None:
    local = datetime(2026, 12, 3, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    job = page_from_rows([row(1, local, job_id=str(JOB), error=None)], limit=5).jobs[0]
    failed = page_from_rows([row(2, local)], limit=5).jobs[0]

    assert job.job_id == JOB
    assert job.created_at == NOW
    assert job.created_at.tzinfo is UTC
    assert job.error is None
    assert str(failed.error) == "DemoFailure: boom"
    expected = {"kind": "DemoFailure", "message": "boom", "step": "simulate"}
    assert failed.to_json()["error"] == expected


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_a_filter_refuses_a_limit_out_of_range(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        JobFilter(limit=limit)


def test_a_filter_refuses_times_without_a_timezone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        JobFilter(since=datetime(2026, 12, 3))  # naive: the point of the test
