"""Progress reports are validated, coalesced and rate-limited; the last one always arrives."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from segue.worker.progress import (
    MAX_MESSAGE_CHARS,
    ProgressCoalescer,
    ProgressReport,
    ProgressSender,
    normalise_progress,
)


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0, 0.0), (0.25, 0.25), (1, 1.0), (-0.5, 0.0), (1.7, 1.0), (math.inf, 1.0)],
)
def test_fractions_are_clamped(fraction: float, expected: float) -> None:
    assert normalise_progress(fraction).fraction == expected


def test_nan_and_non_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        normalise_progress(math.nan)
    with pytest.raises(TypeError, match="number"):
        normalise_progress("half")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="number"):
        normalise_progress(True)


def test_long_messages_are_truncated() -> None:
    report = normalise_progress(0.5, "x" * (MAX_MESSAGE_CHARS + 10))
    assert len(report.message) == MAX_MESSAGE_CHARS


def test_coalescer_keeps_only_the_latest_report() -> None:
    slot = ProgressCoalescer()
    assert slot.offer(ProgressReport(0.1)) is True
    assert slot.offer(ProgressReport(0.2)) is False
    assert slot.offer(ProgressReport(0.3, "latest")) is False
    assert slot.take() == ProgressReport(0.3, "latest")
    assert slot.take() is None
    assert slot.offer(ProgressReport(0.4)) is True


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ProgressReport] = []

    async def __call__(self, report: ProgressReport) -> None:
        self.sent.append(report)


async def test_a_tight_loop_sends_few_reports_and_the_last_one() -> None:
    recorder = Recorder()
    sender = ProgressSender(recorder, 0.05, asyncio.get_running_loop())
    sender.start()
    for i in range(1, 10_001):
        sender.offer(ProgressReport(i / 10_000, f"step {i}"))
        if i % 1000 == 0:
            await asyncio.sleep(0.01)
    await sender.close()
    assert len(recorder.sent) < 20
    assert recorder.sent[-1] == ProgressReport(1.0, "step 10000")


async def test_reports_from_a_thread_arrive() -> None:
    recorder = Recorder()
    sender = ProgressSender(recorder, 0.01, asyncio.get_running_loop())
    sender.start()

    def work() -> None:
        for i in range(1, 101):
            sender.offer(ProgressReport(i / 100))

    thread = threading.Thread(target=work)
    thread.start()
    await asyncio.to_thread(thread.join)
    await sender.close()
    assert recorder.sent
    assert recorder.sent[-1] == ProgressReport(1.0)


async def test_reports_after_close_are_dropped_and_abort_drops_pending() -> None:
    recorder = Recorder()
    sender = ProgressSender(recorder, 10.0, asyncio.get_running_loop())
    sender.start()
    sender.offer(ProgressReport(0.1))
    await asyncio.sleep(0.01)  # sent at once; the next one waits for the interval
    sender.offer(ProgressReport(0.2))
    await sender.abort()
    sender.offer(ProgressReport(0.3))
    assert recorder.sent == [ProgressReport(0.1)]
