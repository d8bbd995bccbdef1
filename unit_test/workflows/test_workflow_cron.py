"""Cron expressions: five fields only, read in a time zone, next match strictly later."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segue.workflows.cron import CronError, check_cron, check_timezone, next_due


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("*/5 * * *", "5 fields"),
        ("0 */5 * * * *", "5 fields"),  # a seconds field is not cron
        ("61 * * * *", "invalid cron expression"),
        ("0 0 31 2 *", "invalid cron expression"),  # never matches
        ("every minute", "5 fields"),
    ],
)
def test_invalid_expressions_are_refused_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(CronError, match=reason):
        check_cron(expression)


def test_valid_expressions_pass_unchanged() -> None:
    assert check_cron("0 3 * * MON-FRI") == "0 3 * * MON-FRI"


def test_unknown_time_zones_are_refused() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Base'"):
        check_timezone("Mars/Base")


def test_the_next_match_is_strictly_after_the_given_moment() -> None:
    assert next_due("*/5 * * * *", "UTC", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 5, tzinfo=UTC
    )
    just_after = datetime(2026, 1, 1, 10, 0, 0, 300_000, tzinfo=UTC)
    assert next_due("*/5 * * * *", "UTC", just_after) == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)


def test_fields_are_read_in_the_time_zone_and_the_answer_is_utc() -> None:
    due = next_due("0 3 * * *", "Europe/Amsterdam", datetime(2026, 1, 1, 12, 0, tzinfo=UTC))

    assert due == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)  # 03:00 CET
    assert due.tzinfo is UTC


def test_a_time_skipped_by_daylight_saving_fires_right_after_the_change() -> None:
    # Europe/Amsterdam jumps from 02:00 to 03:00 on 29 March 2026 (01:00 UTC).
    due = next_due("30 2 * * *", "Europe/Amsterdam", datetime(2026, 3, 28, 12, 0, tzinfo=UTC))

    assert due == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_due("* * * * *", "UTC", datetime(2026, 1, 1))
