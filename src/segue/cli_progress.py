"""How the ``segue`` command draws progress: each attempt's progress over time as a
sparkline, and where a waiting step stands in its queue. Pure functions of a
:class:`~segue.protocol.messages.JobView` (the caller passes the time), so they
are tested without a terminal.

The points of a chart are the attempt's ``step_progress`` history entries (a
thinned subset on long runs, see :mod:`segue.engine.progress`) and, last, the
attempt's own latest progress: at its end (1.0 when it succeeded), or at its
last sign of life while it runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.table import Table

from segue.protocol.messages import AttemptStatus, AttemptView, JobView, QueueEstimate

BARS = " ▁▂▃▄▅▆▇█"
"""Levels of a sparkline cell: blank is nothing done (or nothing known yet)."""
CHART_WIDTH = 40
MAX_CHARTED_ATTEMPTS = 20
"""Attempts drawn at most (the latest): a map step may have thousands."""

Point = tuple[datetime, float]


@dataclass(frozen=True)
class ProgressSeries:
    """One attempt's progress over time, from its start to its end (or now)."""

    attempt: AttemptView
    start: datetime
    end: datetime
    points: tuple[Point, ...]

    @property
    def label(self) -> str:
        """``step``, ``step[item]``, with ``#n`` for a retry."""
        attempt = self.attempt
        label = (
            attempt.step if attempt.item_index is None else f"{attempt.step}[{attempt.item_index}]"
        )
        return label if attempt.number == 1 else f"{label} #{attempt.number}"


def progress_series(view: JobView, now: datetime) -> list[ProgressSeries]:
    """The progress over time of every attempt of the job that started."""
    reported: defaultdict[str, list[Point]] = defaultdict(list)
    for entry in view.history:
        fraction = entry.data.get("fraction")
        if entry.type == "step_progress" and isinstance(fraction, int | float):
            reported[str(entry.data.get("attempt_id"))].append((entry.at, float(fraction)))
    series = []
    for attempt in view.attempts:
        if attempt.started_at is None:
            continue
        end = attempt.finished_at or now
        points = sorted(reported.get(str(attempt.attempt_id), []))
        last = _last_point(attempt, end)
        if last is not None:
            points.append(last)
        series.append(
            ProgressSeries(attempt, attempt.started_at, max(end, attempt.started_at), tuple(points))
        )
    return series


def _last_point(attempt: AttemptView, end: datetime) -> Point | None:
    """The attempt's latest progress, as the last point of its chart."""
    if attempt.status is AttemptStatus.SUCCEEDED:
        return (end, 1.0)
    if attempt.progress is None:
        return None
    return (end, attempt.progress)


def sparkline(points: Sequence[Point], start: datetime, end: datetime, width: int) -> str:
    """``width`` cells over ``start`` .. ``end``, each the progress known at the end of
    its time slice (the latest point up to then; blank before the first)."""
    if width < 1:
        return ""
    span = (end - start).total_seconds()
    ordered = sorted(points)
    cells = []
    index, level = 0, 0.0
    for cell in range(width):
        until = (cell + 1) / width * span
        while index < len(ordered) and (ordered[index][0] - start).total_seconds() <= until:
            level = ordered[index][1]
            index += 1
        cells.append(BARS[_bar(level)])
    return "".join(cells)


def _bar(fraction: float) -> int:
    """The level of a fraction: 0 (blank) for nothing, 8 (full) for done."""
    clamped = min(1.0, max(0.0, fraction))
    return max(1, round(clamped * 8)) if clamped > 0 else 0


def progress_chart(view: JobView, now: datetime, width: int = CHART_WIDTH) -> Table | None:
    """A table with one sparkline per started attempt (the latest ones); None if none started."""
    series = progress_series(view, now)
    if not series:
        return None
    left_out = len(series) - MAX_CHARTED_ATTEMPTS
    caption = f"{left_out} earlier attempts not shown" if left_out > 0 else None
    table = Table(title="progress over time", caption=caption)
    for column in ("step", "status", "from", "progress", "took", "now"):
        table.add_column(column, no_wrap=column == "progress")
    for one in series[-MAX_CHARTED_ATTEMPTS:]:
        attempt = one.attempt
        final = one.points[-1][1] if one.points else 0.0
        table.add_row(
            one.label,
            str(attempt.status),
            f"{one.start:%H:%M:%S}",
            sparkline(one.points, one.start, one.end, width),
            format_duration((one.end - one.start).total_seconds()),
            f"{final:.0%}",
        )
    return table


def describe_queue(estimate: QueueEstimate) -> str:
    """One line on where a waiting step stands: position, workers, run time, ETA."""
    place = (
        f"waiting in queue {estimate.queue!r}: position {estimate.position} of {estimate.waiting}"
    )
    if estimate.tasks > 1:
        place += f" ({estimate.tasks} tasks of this job)"
    if estimate.due_in_s > 0:
        place += f", retry queued in {format_duration(estimate.due_in_s)}"
    if estimate.busy:
        place += f"; {estimate.busy} busy on {estimate.workers} worker(s)"
    else:
        place += "; no worker of this queue seen running lately"
    if estimate.step_duration_s is not None:
        place += f", a run takes ~{format_duration(estimate.step_duration_s)}"
    if estimate.eta_s is not None:
        place += f"; done in ~{format_duration(estimate.eta_s)}"
    return place


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3 min 20 s``, ``2 h 5 min``: short and rounded."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
