"""Datetime and duration values: which texts and numbers they accept and what they mean."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from segue.workflows.timevalues import (
    DATETIME_PATTERN,
    DURATION_PATTERN,
    TimeValueError,
    parse_datetime,
    parse_duration,
    show_duration,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T00:00:00+00:00", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
        (
            "2030-06-15T12:30:45.250+02:00",
            datetime(2030, 6, 15, 12, 30, 45, 250000, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2029-12-31T23:00:00-01:00", datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_datetimes_with_an_offset_are_moments(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected
    assert re.match(DATETIME_PATTERN, text)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("2030-01-01T00:00:00", ""),  # no offset: the moment depends on where it is read
        ("2030-01-01", ""),
        ("2030-01-01 00:00:00+00:00", ""),
        ("20300101T000000Z", ""),
        ("2030-01-01T00:00+00:00", ""),
        ("tomorrow", ""),
        (1893456000, ""),
        (None, ""),
        ("2030-02-30T00:00:00Z", "day is out of range for month"),
        ("2030-01-01T25:00:00Z", "hour must be in 0..23"),
    ],
)
def test_what_is_no_datetime(value: object, detail: str) -> None:
    with pytest.raises(TimeValueError) as caught:
        parse_datetime(value)
    assert caught.value.detail == detail
    assert str(caught.value).startswith("must be a date-time with a timezone offset (ISO 8601")
    assert caught.value.describe(value).startswith(f"{value!r} is not a date-time")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("PT1H30M", 5400),
        ("P7D", 7 * 86400),
        ("P1W", 7 * 86400),
        ("P1DT12H", 129600),
        ("PT0.5S", 0.5),
        ("PT90M", 5400),
        ("PT0S", 0),
        ("P999999998DT86399.5S", 999999998 * 86400 + 86399.5),
        (3600, 3600),
        (1.5, 1.5),
        (0, 0),
    ],
)
def test_durations_are_lengths_of_time(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)
    if isinstance(value, str):
        assert re.match(DURATION_PATTERN, value)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("P1Y", "years and months have no fixed length"),
        ("P2M", "years and months have no fixed length"),
        ("P1Y2M3D", "years and months have no fixed length"),
        ("P", ""),
        ("PT", ""),
        ("P1DT", ""),
        ("PT1.H", ""),
        ("1H", ""),
        ("pt1h", ""),
        ("-PT1H", ""),
        ("", ""),
        (True, ""),
        (None, ""),
        ([60], ""),
        (-1, "it is negative"),
        (float("inf"), "it is not shorter than 999999999 days"),
        (float("nan"), "it is not a number"),
        (10**400, "it is not shorter than 999999999 days"),
        ("P9999999999W", "it is not shorter than 999999999 days"),
        ("P999999999D", "it is not shorter than 999999999 days"),
    ],
)
def test_what_is_no_duration(value: object, detail: str) -> None:
    with pytest.raises(TimeValueError) as caught:
        parse_duration(value)
    assert caught.value.detail.startswith(detail)
    assert bool(caught.value.detail) == bool(detail)
    assert caught.value.describe(value).startswith(f"{value!r} is not a duration (ISO 8601")


def test_months_in_the_time_part_are_minutes() -> None:
    assert parse_duration("PT2M") == timedelta(minutes=2)


def test_durations_show_as_written_and_numbers_in_seconds() -> None:
    assert show_duration("PT1H") == "PT1H"
    assert show_duration(90) == "90 s"
    assert show_duration(0.5) == "0.5 s"
