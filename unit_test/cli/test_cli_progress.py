"""Drawing progress in the terminal (:mod:`segue.cli_progress`): sparklines of each
attempt's progress over time, and the line on a waiting step's queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from rich.console import Console

from fakes import sample_job_view
from segue.cli_progress import (
    MAX_CHARTED_ATTEMPTS,
    describe_queue,
    format_duration,
    progress_chart,
    progress_series,
    sparkline,
)
from segue.protocol.messages import (
    AttemptStatus,
    AttemptView,
    HistoryEntry,
    JobView,
    QueueEstimate,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def attempt(**fields: Any) -> AttemptView:
    values: dict[str, Any] = {
        "attempt_id": uuid4(),
        "step": "optimise",
        "number": 1,
        "status": AttemptStatus.SUCCEEDED,
        "started_at": at(0),
        "finished_at": at(100),
    }
    return AttemptView(**{**values, **fields})


def reports(attempt_id: UUID, *points: tuple[float, float]) -> list[HistoryEntry]:
    return [
        HistoryEntry(
            seq=seq,
            type="step_progress",
            at=at(seconds),
            data={"attempt_id": str(attempt_id), "fraction": fraction, "step": "optimise"},
        )
        for seq, (seconds, fraction) in enumerate(points, start=2)
    ]


def job(attempts: list[AttemptView], history: list[HistoryEntry]) -> JobView:
    return sample_job_view(attempts=attempts, history=history)


def test_a_sparkline_holds_the_latest_progress_of_each_time_slice() -> None:
    points = [(at(0), 0.0), (at(25), 0.5), (at(50), 0.5), (at(100), 1.0)]
    assert sparkline(points, at(0), at(100), 4) == "▄▄▄█"
    assert sparkline(points, at(0), at(100), 8) == " ▄▄▄▄▄▄█"


def test_a_sparkline_is_blank_before_the_first_report_and_never_beyond_full() -> None:
    assert sparkline([(at(60), 2.0)], at(0), at(100), 5) == "  ███"
    assert sparkline([], at(0), at(100), 3) == "   "
    assert sparkline([(at(0), 0.01)], at(0), at(0), 2) == "▁▁", "a tiny fraction still shows"
    assert sparkline([(at(0), 1.0)], at(0), at(10), 0) == ""


def test_each_started_attempt_gets_its_reports_and_its_end_as_points() -> None:
    done = attempt()
    failed = attempt(
        number=2, status=AttemptStatus.FAILED, started_at=at(200), finished_at=at(260), progress=0.3
    )
    running = attempt(
        number=3, status=AttemptStatus.RUNNING, started_at=at(300), finished_at=None, progress=0.6
    )
    waiting = attempt(number=4, status=AttemptStatus.DISPATCHED, started_at=None, finished_at=None)
    history = reports(done.attempt_id, (10, 0.1), (50, 0.5))
    history += reports(failed.attempt_id, (210, 0.3))
    series = progress_series(job([done, failed, running, waiting], history), now=at(330))

    assert [s.label for s in series] == ["optimise", "optimise #2", "optimise #3"]
    assert series[0].points == ((at(10), 0.1), (at(50), 0.5), (at(100), 1.0)), "done: full"
    assert series[1].points[-1] == (at(260), 0.3), "failed: where it stopped"
    assert (series[2].end, series[2].points) == (at(330), ((at(330), 0.6),)), "running: now"


def test_the_chart_draws_the_latest_attempts_only() -> None:
    items = [attempt(item_index=i, started_at=at(i), finished_at=at(i + 10)) for i in range(25)]
    chart = progress_chart(job(items, []), now=at(100))
    assert chart is not None
    assert chart.row_count == MAX_CHARTED_ATTEMPTS
    console = Console(width=120, record=True)
    console.print(chart)
    text = console.export_text()
    assert "optimise[24]" in text
    assert "optimise[4] " not in text
    assert "5 earlier attempts not shown" in text
    assert " " * 39 + "█" in text, "done at the end, nothing reported before"


def test_no_chart_before_any_attempt_started() -> None:
    queued = attempt(status=AttemptStatus.DISPATCHED, started_at=None, finished_at=None)
    assert progress_chart(job([queued], []), now=at(5)) is None


def estimate(**fields: Any) -> QueueEstimate:
    values: dict[str, Any] = {
        "step": "optimise",
        "queue": "optimise",
        "position": 3,
        "waiting": 12,
        "busy": 2,
        "workers": 1,
        "step_duration_s": 40.0,
        "samples": 20,
        "eta_s": 125.0,
        "at": T0,
    }
    return QueueEstimate(**{**values, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {},
            "waiting in queue 'optimise': position 3 of 12; 2 busy on 1 worker(s), "
            "a run takes ~40 s; done in ~2 min 5 s",
        ),
        (
            {"busy": 0, "workers": 0, "eta_s": None},
            "waiting in queue 'optimise': position 3 of 12; no worker of this queue seen "
            "running lately, a run takes ~40 s",
        ),
        (
            {"step_duration_s": None, "samples": 0, "eta_s": None, "tasks": 4},
            "waiting in queue 'optimise': position 3 of 12 (4 tasks of this job); "
            "2 busy on 1 worker(s)",
        ),
        (
            {"due_in_s": 30.0},
            "waiting in queue 'optimise': position 3 of 12, retry queued in 30 s; "
            "2 busy on 1 worker(s), a run takes ~40 s; done in ~2 min 5 s",
        ),
    ],
)
def test_the_queue_line_says_what_is_known(fields: dict[str, Any], expected: str) -> None:
    assert describe_queue(estimate(**fields)) == expected


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.42, "0.4 s"), (42, "42 s"), (60, "1 min"), (200, "3 min 20 s"), (7500, "2 h 5 min")],
)
def test_durations_are_short(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
