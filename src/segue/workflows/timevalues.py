"""Datetime and duration values of job parameters: what they look like and what they mean.

A datetime is ISO 8601 / RFC 3339 with a timezone offset, e.g.
``2030-01-01T00:00:00+00:00`` (``Z`` is UTC; a fraction of a second is allowed).
A value without an offset is refused: a job that runs somewhere else would read
it in another timezone.

A duration is an ISO 8601 duration of weeks, days, hours, minutes and seconds
(``PT1H30M``, ``P7D``, ``PT0.5S``; each part may have a decimal fraction) or a
number of seconds (``5400``). Years and months are refused: they have no fixed
length, so bounds and relations on them would be ambiguous.

Values are stored as the submitter gave them; these functions only read them,
for bounds and relations between parameters.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta

DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
"""The shape of a datetime (a regex that JSON Schema and Python read alike)."""

DURATION_PATTERN = (
    r"^P(?=\d|T\d)(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
    r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$"
)
"""An ISO 8601 duration without years and months (JSON Schema and Python read it alike)."""

DATETIME_HINT = "a date-time with a timezone offset (ISO 8601, e.g. 2030-01-01T00:00:00+00:00)"
DURATION_HINT = "a duration (ISO 8601 like PT1H30M or P7D, or a number of seconds)"

_DATETIME = re.compile(DATETIME_PATTERN)
_DURATION = re.compile(DURATION_PATTERN)
_PART = re.compile(r"(\d+(?:\.\d+)?)([A-Z])")
_DATE_UNITS = {"W": 7 * 86400, "D": 86400}
_TIME_UNITS = {"H": 3600, "M": 60, "S": 1}
_MAX_SECONDS = 999_999_999 * 86_400
"""Durations from here on do not fit a timedelta."""


class TimeValueError(ValueError):
    """A value that is no datetime or duration: ``hint`` says the format, ``detail`` why."""

    def __init__(self, hint: str, detail: str = "") -> None:
        super().__init__(f"must be {hint}" + (f"; {detail}" if detail else ""))
        self.hint = hint
        self.detail = detail

    def describe(self, value: object) -> str:
        """The reason worded after the value, e.g. ``'P1Y' is not a duration (...); ...``."""
        return f"{value!r} is not {self.hint}" + (f"; {self.detail}" if self.detail else "")


def parse_datetime(text: object) -> datetime:
    """The timezone-aware datetime ``text`` stands for; TimeValueError when it is none."""
    if not isinstance(text, str) or not _DATETIME.match(text):
        raise TimeValueError(DATETIME_HINT)
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:  # the right shape, but e.g. 2030-02-30 or 25:00
        raise TimeValueError(DATETIME_HINT, str(exc)) from exc


def is_datetime(text: object) -> bool:
    """Whether :func:`parse_datetime` accepts ``text``."""
    try:
        parse_datetime(text)
    except TimeValueError:
        return False
    return True


def parse_duration(value: object) -> timedelta:
    """The length of a duration: ISO 8601 text or a number of seconds.

    Raises TimeValueError saying why ``value`` is no duration (negative, years, ...).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _seconds(value)
    if not isinstance(value, str):
        raise TimeValueError(DURATION_HINT)
    if re.match(r"^P[^T]*[YM]", value):
        detail = (
            "years and months have no fixed length: give weeks, days, hours, minutes or seconds"
        )
        raise TimeValueError(DURATION_HINT, detail)
    if not _DURATION.match(value):
        raise TimeValueError(DURATION_HINT)
    date_part, _, time_part = value[1:].partition("T")
    seconds = sum(float(n) * _DATE_UNITS[unit] for n, unit in _PART.findall(date_part))
    seconds += sum(float(n) * _TIME_UNITS[unit] for n, unit in _PART.findall(time_part))
    return _seconds(seconds)


def _seconds(seconds: float) -> timedelta:
    """A number of seconds as a timedelta, when it is one (not NaN, negative or too long)."""
    if isinstance(seconds, float) and math.isnan(seconds):
        raise TimeValueError(DURATION_HINT, "it is not a number")
    if seconds < 0:
        raise TimeValueError(DURATION_HINT, "it is negative")
    if seconds >= _MAX_SECONDS:  # exact for any int: Python compares int and float exactly
        raise TimeValueError(DURATION_HINT, "it is not shorter than 999999999 days")
    return timedelta(seconds=seconds)


def show_duration(value: object) -> str:
    """A duration as its file or job shows it: the text, or ``<n> s`` for a number."""
    return value if isinstance(value, str) else f"{json.dumps(value)} s"
