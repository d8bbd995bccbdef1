"""Progress charts of a job: per step, one line per attempt, fraction over time.

Pure functions of the job's attempts and history. An attempt's line starts at
0 when it started (``step_started``), follows its recorded ``step_progress``
entries (a thinned subset when it reported often: see
:mod:`segue.engine.progress`), goes on to the latest report, which the attempt
row always holds (at ``last_seen_at``), and ends at 1 when it succeeded. Lines
of one step share the x axis (Unix seconds), as the chart library wants:
``None`` where a line has no point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from segue.web.reader import HistoryRow

Point = tuple[float, float]
SUCCEEDED = frozenset({"step_succeeded", "map_item_succeeded", "branch_succeeded"})
"""History entries that end an attempt's line at 1 (a map item or branch is one attempt)."""


@dataclass
class _Line:
    """The points of one attempt, as they are collected."""

    step: str
    label: str
    points: list[Point] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StepChart:
    """One step's chart: ``x`` (Unix seconds) and one series of fractions per label."""

    step: str
    labels: list[str]
    x: list[float]
    series: list[list[float | None]]

    def uplot_data(self) -> dict[str, Any]:
        """JSON for the page's script: ``{"step", "labels", "data": [x, *series]}``."""
        return {"step": self.step, "labels": self.labels, "data": [self.x, *self.series]}

    @property
    def points(self) -> int:
        """How many points the chart draws."""
        return sum(value is not None for values in self.series for value in values)


def step_charts(
    attempts: Sequence[Mapping[str, Any]], events: Sequence[HistoryRow]
) -> list[StepChart]:
    """A chart for each step with any progress to show, in the order steps ran."""
    lines = {str(a["attempt_id"]): _Line(a["step"], _label(a, attempts)) for a in attempts}
    for event in events:
        line = lines.get(str(event.data.get("attempt_id")))
        point = _point(event)
        if line is not None and point is not None:
            line.points.append(point)
    for attempt in attempts:
        _add_latest(lines[str(attempt["attempt_id"])], attempt)
    by_step: dict[str, list[_Line]] = {}
    for line in lines.values():
        if line.points:
            by_step.setdefault(line.step, []).append(line)
    return [_aligned(step, step_lines) for step, step_lines in by_step.items()]


def _point(event: HistoryRow) -> Point | None:
    """Where a history entry puts its attempt's line (None: nowhere)."""
    at = _seconds(event.at)
    if event.type == "step_started":
        return (at, 0.0)
    if event.type == "step_progress" and isinstance(event.data.get("fraction"), int | float):
        return (at, float(event.data["fraction"]))
    if event.type in SUCCEEDED:
        return (at, 1.0)
    return None


def _add_latest(line: _Line, attempt: Mapping[str, Any]) -> None:
    """The latest report (the attempt row's), unless the line already ends later."""
    progress, seen = attempt.get("progress"), attempt.get("last_seen_at")
    if progress is None or seen is None or not line.points:
        return
    at = _seconds(seen)
    if at > line.points[-1][0]:
        line.points.append((at, float(progress)))


def _aligned(step: str, lines: list[_Line]) -> StepChart:
    """One x axis for every line of the step."""
    x = sorted({at for line in lines for at, _ in line.points})
    series = []
    for line in lines:
        values: dict[float, float] = dict(line.points)  # a later point at the same time wins
        series.append([values.get(at) for at in x])
    return StepChart(step, [line.label for line in lines], x, series)


def _label(attempt: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]]) -> str:
    """``attempt 2``; with the map item, iteration and run when the job has several."""
    parts = []
    if attempt.get("item_index") is not None:
        parts.append(f"item {attempt['item_index']}")
    parts.append(f"attempt {attempt['number']}")
    if (attempt.get("iteration") or 1) != 1:
        parts.append(f"iteration {attempt['iteration']}")
    if any(other.get("run", 1) != 1 for other in attempts):
        parts.append(f"run {attempt.get('run', 1)}")
    return ", ".join(parts)


def _seconds(moment: datetime) -> float:
    return moment.timestamp()
