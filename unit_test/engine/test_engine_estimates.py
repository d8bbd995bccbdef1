"""Queue positions and ETAs from the figures the store counted
(:mod:`segue.engine.estimates`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segue.engine.estimates import QueueFigures, estimate_queue, eta_s

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
FIGURES = QueueFigures(
    step="optimise",
    queue="optimise",
    ahead_first=3,
    ahead_last=3,
    waiting=10,
    tasks=1,
    busy=2,
    workers=2,
    durations_s=(9.0, 10.0, 40.0),
)


def test_the_position_counts_the_tasks_ahead_and_the_eta_drains_them() -> None:
    estimate = estimate_queue(FIGURES, NOW)
    assert (estimate.position, estimate.waiting, estimate.busy) == (4, 10, 2)
    assert estimate.step_duration_s == 10.0, "the median: one slow run does not count much"
    assert estimate.samples == 3
    # 3.5 tasks' worth of runs on 2 slots, then its own run.
    assert estimate.eta_s == pytest.approx(3.5 * 10.0 / 2 + 10.0)
    assert estimate.at == NOW


@pytest.mark.parametrize(
    ("figures", "why"),
    [
        (replace(FIGURES, durations_s=()), "no finished attempt to go by"),
        (replace(FIGURES, busy=0, workers=0), "no worker seen running the queue"),
    ],
)
def test_no_eta_without_a_run_time_or_a_worker(figures: QueueFigures, why: str) -> None:
    estimate = estimate_queue(figures, NOW)
    assert estimate.eta_s is None, why
    assert estimate.position == 4, "the position is known anyway"


def test_a_worker_between_two_tasks_drains_the_queue_too() -> None:
    between = estimate_queue(replace(FIGURES, busy=0, workers=1), NOW)
    assert between.eta_s == pytest.approx(3.5 * 10.0 + 10.0)
    concurrent = estimate_queue(replace(FIGURES, busy=4, workers=1), NOW)
    assert concurrent.eta_s == pytest.approx(3.5 * 10.0 / 4 + 10.0), "four slots on one worker"


def test_a_map_step_is_done_when_its_last_waiting_item_is() -> None:
    first_only = estimate_queue(FIGURES, NOW)
    items = estimate_queue(replace(FIGURES, ahead_last=7, tasks=5), NOW)
    assert items.position == first_only.position
    assert items.tasks == 5
    assert items.eta_s is not None
    assert first_only.eta_s is not None
    assert items.eta_s == pytest.approx(first_only.eta_s + 4 * 10.0 / 2)


def test_a_retry_in_backoff_starts_no_earlier_than_it_is_due() -> None:
    late = estimate_queue(replace(FIGURES, due_at=NOW + timedelta(seconds=60)), NOW)
    assert late.due_in_s == 60.0
    assert late.eta_s == pytest.approx(60.0 + 10.0), "the queue drains during the backoff"
    soon = estimate_queue(replace(FIGURES, due_at=NOW + timedelta(seconds=1)), NOW)
    assert soon.eta_s == estimate_queue(FIGURES, NOW).eta_s
    overdue = estimate_queue(replace(FIGURES, due_at=NOW - timedelta(seconds=5)), NOW)
    assert overdue.due_in_s == 0.0


@given(
    ahead=st.integers(min_value=0, max_value=10_000),
    busy=st.integers(min_value=1, max_value=500),
    duration=st.floats(min_value=0.01, max_value=86_400),
)
def test_more_ahead_never_means_sooner_and_more_workers_never_later(
    ahead: int, busy: int, duration: float
) -> None:
    eta = eta_s(ahead, busy, duration)
    assert eta is not None
    assert eta >= duration, "at least its own run"
    later = eta_s(ahead + 1, busy, duration)
    assert later is not None
    assert later >= eta
    more_workers = eta_s(ahead, busy + 1, duration)
    assert more_workers is not None
    assert more_workers <= eta
