"""Progress reports: validated, coalesced, and sent at a bounded rate.

A handler may call ``ctx.progress`` in a tight loop, from the event loop or
from its thread. Only the latest report is kept while one is pending, and at
most one report is sent per interval, so the broker never sees a flood; the
last report is always sent before the step's result.
"""

from __future__ import annotations

import asyncio
import contextlib
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

    def take(self) -> ProgressReport | None:
        """The latest report, emptying the slot."""
        with self._lock:
            report, self._pending = self._pending, None
            return report


Send = Callable[[ProgressReport], Awaitable[object]]


class ProgressSender:
    """Sends coalesced progress reports, at most one per ``min_interval_s``.

    :meth:`offer` may be called from any thread. :meth:`start` begins sending;
    :meth:`close` sends whatever is still pending and stops; :meth:`abort`
    stops without sending.
    """

    def __init__(self, send: Send, min_interval_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self._send = send
        self._min_interval_s = min_interval_s
        self._loop = loop
        self._coalescer = ProgressCoalescer()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._accepting = True
        self._task: asyncio.Task[None] | None = None

    def offer(self, report: ProgressReport) -> None:
        """Queue ``report`` for sending; never blocks, safe from any thread."""
        if not self._accepting or not self._coalescer.offer(report):
            return
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed: the attempt is long over
            return

    def start(self) -> None:
        """Start the sending task."""
        self._task = asyncio.create_task(self._run(), name="segue-progress")

    async def close(self) -> None:
        """Stop accepting reports and send the last pending one."""
        self._accepting = False
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def abort(self) -> None:
        """Stop at once, dropping anything pending."""
        self._accepting = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._closing.is_set():
            await self._wake.wait()
            self._wake.clear()
            await self._send_pending()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._min_interval_s)
        await self._send_pending()

    async def _send_pending(self) -> None:
        report = self._coalescer.take()
        if report is not None:
            await self._send(report)
