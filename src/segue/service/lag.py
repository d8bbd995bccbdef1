"""How far the orchestrator has heard from the workers: the horizon of its deadlines.

A heartbeat counts only once the orchestrator has handled its message. With a
backlog in the events queue (a burst of results, a slow database, the
orchestrator itself restarting) the heartbeats of live workers wait behind it,
and judging heartbeat deadlines by the wall clock would declare those workers
lost and run their steps twice.

So deadlines are judged at the *horizon* instead: how far, in the workers' send
times, the events queue has been handled (events leave the queue in the order
they were sent):

- while batches are being handled: the oldest send time among them;
- between batches: the newest send time of the last batch handled;
- once no batch has been handled for :data:`QUIET_S` while consuming: now (the
  queue is drained);
- before the consumer started (or after it stopped): as far back as allowed,
  since nobody knows what waits in the queue.

The horizon trails now by at most ``max_lag_s``. That bounds how long a backlog
can hold deadlines back, and how far a worker clock running behind can (clocks
ahead only shorten the grace). Events without a send time do not move it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import count

QUIET_S = 1.0
"""No batch for this long while consuming means the events queue is drained."""


class EventsHorizon:
    """The moment up to which every worker event has been handled (see the module)."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        max_lag_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._max_lag = timedelta(seconds=max_lag_s)
        self._handling: dict[int, datetime] = {}
        self._ids = count()
        self._last_handled: datetime | None = None
        self._quiet_since: float | None = None

    def consuming(self) -> None:
        """The events consumer started: from now on, a quiet queue means a drained one."""
        self._quiet_since = self._monotonic()

    def stopped(self) -> None:
        """The events consumer stopped: what waits in the queue is unknown again."""
        self._quiet_since = None

    @contextmanager
    def handling(self, sent_at: Iterable[datetime | None]) -> Iterator[None]:
        """Hold the horizon at the oldest of these send times while a batch is handled."""
        moments = [moment for moment in sent_at if moment is not None]
        if not moments:
            yield
            return
        key = next(self._ids)
        self._handling[key] = min(moments)
        try:
            yield
        finally:
            del self._handling[key]
            newest = max(moments)
            if self._last_handled is None or newest > self._last_handled:
                self._last_handled = newest
            if self._quiet_since is not None:
                self._quiet_since = self._monotonic()

    def __call__(self) -> datetime:
        """The horizon now: between ``now - max_lag_s`` and now."""
        now = self._clock()
        floor = now - self._max_lag
        if self._handling:
            horizon = min(self._handling.values())
        elif self._quiet_since is not None and self._monotonic() - self._quiet_since >= QUIET_S:
            horizon = now
        else:
            horizon = self._last_handled or floor
        return max(min(horizon, now), floor)

    def lag_s(self) -> float:
        """How far the horizon trails the clock, in seconds."""
        return (self._clock() - self()).total_seconds()
