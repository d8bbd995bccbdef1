"""Progress reports: validated, coalesced, and sent at a bounded rate.

A handler may call ``ctx.progress`` in a tight loop, from the event loop or
from its thread. Only the latest report is kept while one is pending, and at
most one report is sent per interval, so the broker never sees a flood.

The first report goes out only once an interval has passed since the step
started, and a report still pending when the step's result is ready is
dropped: the result says more than any progress. A step that ends within one
interval therefore sends no progress at all, which halves the events of an
instant step (``started`` and its result are all the orchestrator handles).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_MESSAGE_CHARS = 2000
"""Longest progress message the protocol accepts; longer ones are truncated."""


@dataclass(frozen=True)
class ProgressReport:
    """How far a step is, from 0.0 to 1.0, and what it is doing."""

    fraction: float
    message: str = ""


def normalise_progress(fraction: float, message: str = "") -> ProgressReport:
    """A valid report: ``fraction`` clamped to [0, 1], ``message`` truncated.

    Raises ``TypeError`` for a fraction that is not a real number and
    ``ValueError`` for NaN, since neither can be shown as progress.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress fraction must be a number, got {type(fraction).__name__}")
    if math.isnan(fraction):
        raise ValueError("progress fraction must not be NaN")
    text = str(message)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return ProgressReport(min(1.0, max(0.0, float(fraction))), text)


class ProgressCoalescer:
    """A thread-safe slot holding the latest report not yet sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: ProgressReport | None = None

    def offer(self, report: ProgressReport) -> bool:
        """Keep ``report`` as the latest; True if the slot was empty (wake the sender)."""
        with self._lock:
            was_empty = self._pending is None
            self._pending = report
            return was_empty

    @property
    def pending(self) -> bool:
        """Whether a report waits to be sent."""
        return self._pending is not None

    def take(self) -> ProgressReport | None:
        """The latest report, emptying the slot."""
        with self._lock:
            report, self._pending = self._pending, None
            return report


Send = Callable[[ProgressReport], Awaitable[object]]


class ProgressSender:
    """Sends coalesced progress reports, at most one per ``min_interval_s``.

    :meth:`offer` may be called from any thread. :meth:`start` starts the
    clock: the first report may go ``min_interval_s`` later. :meth:`close`
    drops whatever is pending and waits for a report being sent (so it reaches
    the broker before the result); :meth:`abort` drops everything at once.
    Nothing runs between reports: a timer is armed only while one is pending.
    """

    def __init__(self, send: Send, min_interval_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self._send = send
        self._min_interval_s = min_interval_s
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._coalescer = ProgressCoalescer()
        self._next_at: float | None = None
        self._accepting = True
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None

    def offer(self, report: ProgressReport) -> None:
        """Queue ``report`` for sending; never blocks, safe from any thread."""
        if not self._accepting or not self._coalescer.offer(report):
            return
        if threading.get_ident() == self._loop_thread:
            self._schedule()
            return
        try:
            self._loop.call_soon_threadsafe(self._schedule)
        except RuntimeError:  # the loop is closed: the attempt is long over
            return

    def start(self) -> None:
        """Start the clock: the first report may be sent one interval from now."""
        self._next_at = self._loop.time() + self._min_interval_s
        self._schedule()

    async def close(self) -> None:
        """Stop accepting reports, drop the pending one, wait for one being sent."""
        self._stop()
        sending = self._sending
        if sending is not None:
            await asyncio.gather(sending, return_exceptions=True)

    async def abort(self) -> None:
        """Stop at once, dropping anything pending or being sent."""
        self._stop()
        sending = self._sending
        if sending is not None:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)

    def _stop(self) -> None:
        self._accepting = False
        self._coalescer.take()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        """Arm the timer for the pending report, unless armed, sending or not started."""
        if not self._accepting or self._next_at is None:
            return
        if self._timer is not None or self._sending is not None:
            return
        if not self._coalescer.pending:
            return
        delay = max(0.0, self._next_at - self._loop.time())
        self._timer = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        report = self._coalescer.take()
        if not self._accepting or report is None:
            return
        self._next_at = self._loop.time() + self._min_interval_s
        self._sending = self._loop.create_task(self._send_one(report), name="segue-progress")

    async def _send_one(self, report: ProgressReport) -> None:
        try:
            await self._send(report)
        finally:
            self._sending = None
            self._schedule()  # a report offered meanwhile waits for the next slot
