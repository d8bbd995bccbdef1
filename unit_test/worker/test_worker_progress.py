"""Progress reports are validated, coalesced and rate-limited.

The first report waits one interval after the start, and a report still
pending when the step ends is dropped (its result supersedes it).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time

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
    def __init__(self, takes_s: float = 0.0) -> None:
        self.sent: list[ProgressReport] = []
        self.sent_at: list[float] = []
        self.begun_at: list[float] = []
        """When each send began: the pacing is between these (a busy loop may delay
        the end of a send, not its start)."""
        self.takes_s = takes_s

    async def __call__(self, report: ProgressReport) -> None:
        self.begun_at.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.takes_s)
        self.sent.append(report)
        self.sent_at.append(asyncio.get_running_loop().time())


def started_sender(recorder: Recorder, interval_s: float) -> tuple[ProgressSender, float]:
    loop = asyncio.get_running_loop()
    sender = ProgressSender(recorder, interval_s, loop)
    sender.start()
    return sender, loop.time()


async def test_the_first_report_waits_one_interval() -> None:
    recorder = Recorder()
    sender, started_at = started_sender(recorder, 0.1)
    sender.offer(ProgressReport(0.1, "early"))
    await asyncio.sleep(0.05)
    assert recorder.sent == [], "nothing is sent before the interval has passed"
    await asyncio.sleep(0.1)
    assert recorder.sent == [ProgressReport(0.1, "early")]
    assert recorder.sent_at[0] - started_at >= 0.1
    await sender.close()


async def test_a_tight_loop_sends_one_report_per_interval_at_most() -> None:
    recorder = Recorder()
    sender, started_at = started_sender(recorder, 0.05)
    for i in range(1, 10_001):
        sender.offer(ProgressReport(i / 10_000, f"step {i}"))
        if i % 1000 == 0:
            await asyncio.sleep(0.03)
    await asyncio.sleep(0.06)
    await sender.close()
    elapsed = asyncio.get_running_loop().time() - started_at
    # However slowly this machine ran the loop: never more than one report per interval.
    assert 1 <= len(recorder.sent) <= elapsed / 0.05 + 1
    assert recorder.sent[-1] == ProgressReport(1.0, "step 10000"), "the latest report wins"
    times = [started_at, *recorder.begun_at]
    assert all(later - earlier >= 0.049 for earlier, later in itertools.pairwise(times))


async def test_reports_from_a_thread_arrive() -> None:
    recorder = Recorder()
    sender, _ = started_sender(recorder, 0.01)

    def work() -> None:
        for i in range(1, 101):
            sender.offer(ProgressReport(i / 100))
            time.sleep(0.001)

    thread = threading.Thread(target=work)
    thread.start()
    await asyncio.to_thread(thread.join)
    await asyncio.sleep(0.05)
    await sender.close()
    assert recorder.sent
    assert recorder.sent[-1] == ProgressReport(1.0)


async def test_close_drops_the_pending_report_and_later_ones() -> None:
    recorder = Recorder()
    sender, _ = started_sender(recorder, 10.0)
    sender.offer(ProgressReport(0.9))
    await sender.close()
    sender.offer(ProgressReport(1.0))
    await asyncio.sleep(0.01)
    assert recorder.sent == []


async def test_close_waits_for_a_report_being_sent() -> None:
    recorder = Recorder(takes_s=0.05)
    sender, _ = started_sender(recorder, 0.0)
    sender.offer(ProgressReport(0.5))
    await asyncio.sleep(0.01)  # being sent now
    await sender.close()
    assert recorder.sent == [ProgressReport(0.5)], "it reaches the broker before the result"


async def test_abort_drops_a_report_being_sent() -> None:
    recorder = Recorder(takes_s=0.05)
    sender, _ = started_sender(recorder, 0.0)
    sender.offer(ProgressReport(0.5))
    await asyncio.sleep(0.01)
    await sender.abort()
    await asyncio.sleep(0.06)
    assert recorder.sent == []
