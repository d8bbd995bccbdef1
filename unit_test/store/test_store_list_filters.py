"""Reading the job-list filters operators type (CLI options, web form fields)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from segue.protocol.messages import JobStatus
from segue.store.list_filters import (
    FilterError,
    FilterText,
    parse_filter,
    parse_moment,
    parse_statuses,
)
from segue.store.listing import Cursor, JobFilter

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_nothing_typed_lists_everything_fifty_at_a_time() -> None:
    assert parse_filter(FilterText(), NOW) == JobFilter()


def test_empty_form_fields_do_not_filter() -> None:
    typed = FilterText(("",), "", " ", "", "", "", "", "", "")

    assert parse_filter(typed, NOW) == JobFilter()


def test_every_field_is_read() -> None:
    cursor = Cursor(NOW - timedelta(hours=1), UUID(int=7))
    typed = FilterText(
        statuses=("failed",),
        workflow=" energy_plan ",
        since="2d",
        until="2026-12-03T10:00:00+01:00",
        step="simulate",
        error="Timeout",
        owner="alice",
        after=cursor.token(),
        limit="200",
    )

    assert parse_filter(typed, NOW) == JobFilter(
        statuses=(JobStatus.FAILED,),
        workflow="energy_plan",
        since=NOW - timedelta(days=2),
        until=datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
        step="simulate",
        error_text="Timeout",
        owner="alice",
        after=cursor,
        limit=200,
    )


def test_statuses_repeat_or_come_comma_separated_in_any_case_each_once() -> None:
    statuses = parse_statuses(["timed_out,FAILED", "failed", " queued "])

    assert statuses == (JobStatus.QUEUED, JobStatus.FAILED, JobStatus.TIMED_OUT)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1.5h", timedelta(minutes=90)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        ("2 H", timedelta(hours=2)),
    ],
)
def test_relative_times_count_back_from_now(text: str, ago: timedelta) -> None:
    assert parse_moment(text, NOW) == NOW - ago


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T08:30", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        ("2026-12-01T08:30Z", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
        (
            "2026-12-01T08:30+02:00",
            datetime(2026, 12, 1, 8, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_iso_times_are_utc_unless_they_say_otherwise(text: str, moment: datetime) -> None:
    assert parse_moment(text, NOW) == moment


@pytest.mark.parametrize(
    ("typed", "field", "says"),
    [
        (FilterText(statuses=("done",)), "status", "'done' is not a job status"),
        (FilterText(since="yesterday"), "since", "neither ISO 8601"),
        (FilterText(until="3 fortnights"), "until", "neither ISO 8601"),
        (FilterText(since="1h", until="2h"), "until", "must be later than since"),
        (FilterText(limit="0"), "limit", "between 1 and 1000"),
        (FilterText(limit=1001), "limit", "between 1 and 1000"),
        (FilterText(limit="ten"), "limit", "not a whole number"),
        (FilterText(after="garbage"), "after", "not a cursor"),
        (FilterText(workflow="w" * 201), "workflow", "longer than 200"),
        (FilterText(error="e" * 201), "error", "longer than 200"),
    ],
)
def test_a_value_that_cannot_be_read_names_its_field(
    typed: FilterText, field: str, says: str
) -> None:
    with pytest.raises(FilterError, match=says) as caught:
        parse_filter(typed, NOW)

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
