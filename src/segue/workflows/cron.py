"""Cron expressions of recurring jobs: checking them, and when they next fire.

A schedule's ``cron`` is a classic five-field expression (minute, hour, day of
month, month, day of week; names like ``MON`` and ``JAN`` allowed) read in a
time zone of the IANA database (default UTC). Evaluation is delegated to
`cronsim <https://pypi.org/project/cronsim/>`_, which follows Debian cron,
including its behaviour on daylight-saving changes: a time skipped when the
clocks go forward fires right after the change, a time repeated when they go
back fires once.

Pure: the caller passes the moment to count from; nothing here reads a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from segue.errors import SegueError

CRON_FIELDS = 5
DEFAULT_TIMEZONE = "UTC"


class CronError(SegueError, ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


def check_cron(expression: str) -> str:
    """``expression`` if it is a valid five-field cron expression, else :class:`CronError`."""
    fields = expression.split()
    if len(fields) != CRON_FIELDS:
        raise CronError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}: {expression!r}"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise CronError(f"invalid cron expression {expression!r}: {exc}") from exc
    return expression


def check_timezone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name`` (e.g. ``Europe/Amsterdam``), else :class:`CronError`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r} (use an IANA name such as 'UTC')") from exc


def next_due(expression: str, timezone: str, after: datetime) -> datetime:
    """The first moment strictly after ``after`` that ``expression`` matches in
    ``timezone``, in UTC. ``after`` must be timezone-aware."""
    if after.tzinfo is None:
        raise ValueError("next_due: 'after' must be timezone-aware")
    zone = check_timezone(timezone)
    # cronsim counts whole seconds: drop the fraction first, so that a moment just
    # past a match (10:00:00.3) does not yield that same match again.
    start = after.astimezone(zone).replace(microsecond=0)
    try:
        due = next(CronSim(check_cron(expression), start))
    except CronSimError as exc:
        raise CronError(f"invalid cron expression {expression!r}: {exc}") from exc
    return due.astimezone(UTC)
