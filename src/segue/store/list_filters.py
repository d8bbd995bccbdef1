"""Job-list filters as operators type them, read into a :class:`JobFilter`.

``segue jobs list --status failed --since 2h`` and the web page's form fields
give the same texts; :func:`parse_filter` checks them all and names the field
of the first one it cannot read (:class:`FilterError`), so the command can
answer with a usage error (exit code 2) and the page with a message. Times are
ISO 8601 (``2026-12-01``, ``2026-12-01T08:00``, with an offset or else UTC) or
relative to ``now`` (``90s``, ``30m``, ``2h``, ``3d``, ``1w``: that long ago).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from segue.errors import SegueError
from segue.protocol.messages import JobStatus
from segue.store.listing import DEFAULT_LIMIT, MAX_LIMIT, Cursor, JobFilter

MAX_TEXT_CHARS = 200
"""Longest workflow, step, owner or error text accepted (names are far shorter)."""

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_STATUS_NAMES = ", ".join(status.value for status in JobStatus)


class FilterError(SegueError):
    """A filter the operator typed cannot be read; ``field`` names it (``status``…)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FilterText:
    """The filters as typed; empty texts (an empty form field) do not filter."""

    statuses: Sequence[str] = field(default_factory=tuple)
    workflow: str | None = None
    since: str | None = None
    until: str | None = None
    step: str | None = None
    error: str | None = None
    owner: str | None = None
    after: str | None = None
    limit: str | int | None = None


def parse_filter(typed: FilterText, now: datetime) -> JobFilter:
    """The :class:`JobFilter` the operator asked for; FilterError names what is wrong."""
    since = _moment("since", typed.since, now)
    until = _moment("until", typed.until, now)
    if since is not None and until is not None and since >= until:
        raise FilterError("until", f"must be later than since ({since.isoformat()})")
    return JobFilter(
        statuses=parse_statuses(typed.statuses),
        workflow=_name("workflow", typed.workflow),
        since=since,
        until=until,
        step=_name("step", typed.step),
        error_text=_name("error", typed.error),
        owner=_name("owner", typed.owner),
        after=_cursor(typed.after),
        limit=parse_limit(typed.limit),
    )


def parse_statuses(values: Sequence[str]) -> tuple[JobStatus, ...]:
    """Job statuses by name (each once, in the order of :class:`JobStatus`)."""
    chosen: set[JobStatus] = set()
    for value in values:
        for name in value.split(","):  # "--status failed,timed_out" works too
            if not name.strip():
                continue
            try:
                chosen.add(JobStatus(name.strip().lower()))
            except ValueError:
                raise FilterError(
                    "status", f"{name.strip()!r} is not a job status ({_STATUS_NAMES})"
                ) from None
    return tuple(status for status in JobStatus if status in chosen)


def parse_moment(text: str, now: datetime) -> datetime:
    """A moment: ISO 8601 (UTC unless it says otherwise) or ``N s|m|h|d|w`` ago."""
    relative = _RELATIVE.match(text.strip())
    if relative is not None:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return now - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither ISO 8601 (2026-12-01T08:00Z) nor relative (30m, 2h, 3d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_limit(value: str | int | None) -> int:
    """Jobs per page: 1 to :data:`MAX_LIMIT` (None or empty: the default)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise FilterError("limit", f"{value!r} is not a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise FilterError("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _moment(name: str, text: str | None, now: datetime) -> datetime | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_moment(text, now)
    except ValueError as exc:
        raise FilterError(name, str(exc)) from None


def _name(name: str, text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    if len(text) > MAX_TEXT_CHARS:
        raise FilterError(name, f"longer than {MAX_TEXT_CHARS} characters")
    return text.strip()


def _cursor(token: str | None) -> Cursor | None:
    if token is None or not token.strip():
        return None
    try:
        return Cursor.from_token(token)
    except ValueError as exc:
        raise FilterError("after", str(exc)) from None
