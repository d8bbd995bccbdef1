"""A job's history as the page tells it: the timeline, the tally, the progress charts."""

from __future__ import annotations

from uuid import uuid4

import pytest
from web_fakes import T0, at, attempt_row, event

from segue.web.progress import step_charts
from segue.web.timeline import attempt_label, describe, tally, timeline
from segue.web.views import duration, pretty_json


def test_the_timeline_tells_each_entry_but_progress_with_its_offset_and_tone() -> None:
    events = [
        event(1, "job_submitted", 0, workflow="energy_plan", version="2", priority=5),
        event(2, "step_dispatched", 0.5, step="prepare", attempt=1, queue="prepare"),
        event(3, "step_progress", 1, step="prepare", attempt=1, fraction=0.5),
        event(4, "step_lost", 9, step="prepare", attempt=1, worker_id="w1", reason="silent"),
        event(5, "job_failed", 12, step="prepare", error={"kind": "K", "message": "m"}),
    ]

    entries = timeline(events, T0)

    assert [entry.seq for entry in entries] == [1, 2, 4, 5]
    assert [entry.tone for entry in entries] == ["info", "info", "warn", "bad"]
    assert entries[0].text == "submitted: energy_plan v2, priority 5"
    assert entries[1].text == "dispatched to queue prepare"
    assert entries[2].offset_s == 9
    assert entries[2].text == "worker w1 lost: silent (crash ? of this step)"
    assert entries[3].text == "job failed: K: m"


@pytest.mark.parametrize(
    ("kind", "data", "text"),
    [
        ("step_started", {"worker_id": "h:1"}, "started on worker h:1"),
        (
            "step_started",
            {"worker_id": "h:1", "event": "step_progress"},
            "started on worker h:1 (first heard of by step progress)",
        ),
        ("step_succeeded", {"next": "report"}, "succeeded; next: report"),
        ("step_succeeded", {"next": None}, "succeeded; last step"),
        (
            "step_retry_scheduled",
            {"delay_s": 2.5, "error": {"kind": "E", "message": "boom"}},
            "retry scheduled in 2.5 s after E: boom",
        ),
        (
            "step_redelivered",
            {"worker_id": "b", "previous_worker_id": "a", "crashes": 1},
            "task redelivered to worker b; worker a went away (crash 1)",
        ),
        (
            "step_taken_back",
            {"worker_id": "a", "previous_worker_id": "b"},
            "worker a had not gone away: its result counts; worker b told to stop",
        ),
        ("job_succeeded", {}, "job succeeded"),
        (
            "job_rerun",
            {"run": 2, "from_step": "s", "previous_status": "failed", "reason": "r"},
            "run 2 from step s (was failed): r",
        ),
        ("something_new", {"b": 1, "a": "x"}, 'something new: {"a": "x", "b": 1}'),
    ],
)
def test_each_kind_of_entry_reads_as_words(kind: str, data: dict[str, object], text: str) -> None:
    assert describe(kind, data) == text


def test_an_unknown_entry_with_much_data_is_cut() -> None:
    text = describe("something_new", {"blob": "x" * 1000})

    assert len(text) < 340
    assert text.endswith("…")


@pytest.mark.parametrize(
    ("data", "label"),
    [
        ({"attempt": 2}, "attempt 2"),
        ({"attempt": 1, "item_index": 3}, "item 3, attempt 1"),
        ({"attempt": 1, "iteration": 2}, "attempt 1, iteration 2"),
        ({"step": "s"}, ""),
    ],
)
def test_attempts_are_named_with_their_item_and_iteration(
    data: dict[str, object], label: str
) -> None:
    assert attempt_label(data) == label


def test_the_tally_counts_what_went_wrong() -> None:
    kinds = ["step_progress"] * 3 + ["step_retry_scheduled"] * 2 + ["step_lost", "event_ignored"]
    events = [event(n, kind, n) for n, kind in enumerate(kinds, 1)]

    counted = tally(events)

    assert (counted.progress, counted.retries, counted.lost, counted.ignored) == (3, 2, 1, 1)


def test_a_chart_per_step_with_a_line_per_attempt_on_one_time_axis() -> None:
    first, second, other = uuid4(), uuid4(), uuid4()
    attempts = [
        attempt_row(first, "simulate", 1, status="failed", progress=0.3, last_seen_at=at(3)),
        attempt_row(second, "simulate", 2, status="succeeded", progress=1.0, last_seen_at=at(9)),
        attempt_row(other, "report", 1, progress=None, last_seen_at=None),
    ]
    events = [
        event(1, "step_started", 1, attempt_id=str(first)),
        event(2, "step_progress", 2, attempt_id=str(first), fraction=0.3),
        event(3, "step_failed", 3, attempt_id=str(first)),
        event(4, "step_started", 5, attempt_id=str(second)),
        event(5, "step_progress", 6, attempt_id=str(second), fraction=0.6),
        event(6, "step_succeeded", 9, attempt_id=str(second)),
    ]

    (chart,) = step_charts(attempts, events)

    t = at(0).timestamp()
    assert chart.step == "simulate"
    assert chart.labels == ["attempt 1", "attempt 2"]
    assert chart.x == [t + 1, t + 2, t + 3, t + 5, t + 6, t + 9]
    assert chart.series == [
        [0.0, 0.3, 0.3, None, None, None],
        [None, None, None, 0.0, 0.6, 1.0],
    ]
    assert chart.points == 6
    assert chart.uplot_data()["data"][0] == chart.x


def test_a_running_attempt_ends_its_line_with_its_latest_report() -> None:
    running = uuid4()
    attempts = [attempt_row(running, "simulate", progress=0.8, last_seen_at=at(20))]
    events = [
        event(1, "step_started", 1, attempt_id=str(running)),
        event(2, "step_progress", 2, attempt_id=str(running), fraction=0.1),
    ]

    (chart,) = step_charts(attempts, events)

    assert chart.series == [[0.0, 0.1, 0.8]]
    assert chart.x[-1] == at(20).timestamp()


def test_map_items_and_reruns_are_told_apart_in_the_legend() -> None:
    a, b = uuid4(), uuid4()
    attempts = [
        attempt_row(a, "simulate", item_index=0, run=1),
        attempt_row(b, "simulate", item_index=1, run=2, iteration=2),
    ]
    events = [
        event(1, "step_started", 1, attempt_id=str(a)),
        event(2, "step_started", 2, attempt_id=str(b)),
    ]

    (chart,) = step_charts(attempts, events)

    assert chart.labels == ["item 0, attempt 1, run 1", "item 1, attempt 1, iteration 2, run 2"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (12, "12 s"), (185, "3 min 5 s"), (7800, "2 h 10 min"), (273600, "3 d 4 h")],
)
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert duration(at(0), at(seconds)) == text


def test_long_json_is_cut_saying_how_much() -> None:
    text = pretty_json({"blob": "x" * 500}, limit=100)

    assert text.startswith('{\n  "blob": "xxx')
    assert text.endswith("(416 more characters)")
