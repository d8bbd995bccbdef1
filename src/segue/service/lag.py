"""How far the orchestrator has heard from the workers: the horizon of its deadlines.

A heartbeat counts only once the orchestrator has handled its message. With a
backlog in the events queue (a burst of results, a slow database, the
orchestrator itself restarting) the heartbeats of live workers wait behind it,
and judging heartbeat deadlines by the wall clock would declare those workers
lost and run their steps twice.

So deadlines are judged at the *horizon* instead: how far, in the workers' send
times, the events queue has been handled. Workers stamp each event with its send
time (the AMQP ``timestamp`` property, whole seconds), so the orchestrator knows
the send times of the events it holds without decoding them. The horizon is
the earliest of:

- the send times of the events being handled, or held unhandled, or given back
  to the queue by a batch that failed (until the queue is found empty again);
- while events are ready in the broker: the newest send time handled so far
  (events leave the queue in the order they were sent);

and now when nothing waits anywhere (:meth:`EventsHorizon.refresh` asks the
broker and the consumer before each sweep). Before the consumer started, when
the backlog cannot be asked, or when a held event has no timestamp (an older
worker), it is as far back as allowed. Only a batch handled successfully moves
the horizon on. Replicas publish their horizons and each sweeper takes the
earliest of those that still bind (see
:data:`segue.store.repository.SHARED_HORIZON_SQL`), since events another
replica holds could still move a deadline. A replica that falls silent keeps
binding with its last horizon until the events queue is seen drained (what the
broker said at the last refresh, :attr:`EventsHorizon.waiting`, is published
with the horizon for that): its events may be held by it while it is frozen,
or wait in the queue behind newer ones once it is gone.

The horizon trails now by at most ``max_lag_s``. That bounds how long a backlog
can hold deadlines back, and how far a worker clock running behind can (clocks
ahead only shorten the grace). The backlog is asked of the broker, not judged
by how long the consumer has been quiet, so an orchestrator that was frozen or
starved does not take the silence for a drained queue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits: events ready in the broker, and those the consumer holds
    unhandled or gave back (``oldest_held``: the earliest send time among these;
    ``held_known``: every one of them had a send time); ``consumers``: how many
    consumers the events queue has, every replica's (None: not known)."""

    ready: int
    held: int
    oldest_held: datetime | None = None
    held_known: bool = True
    consumers: int | None = None


AskBacklog = Callable[[], Awaitable[Backlog]]


class EventsHorizon:
    """The moment up to which every worker event has been handled (see the module)."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        max_lag_s: float,
        backlog: AskBacklog | None = None,
    ) -> None:
        self._clock = clock
        self._max_lag = timedelta(seconds=max_lag_s)
        self._backlog = backlog
        self._handling: dict[int, datetime] = {}
        self._ids = count()
        self._last_handled: datetime | None = None
        self._consuming = False
        self._waiting: Backlog | None = None if backlog is not None else Backlog(0, 0)

    @property
    def waiting(self) -> Backlog | None:
        """What the last :meth:`refresh` found waiting (None: not known)."""
        return self._waiting

    def floor(self) -> datetime:
        """The earliest the horizon may be: now less ``max_lag_s``."""
        return self._clock() - self._max_lag

    def consuming(self) -> None:
        """The events consumer started."""
        self._consuming = True

    def stopped(self) -> None:
        """The events consumer stopped: what waits in the queue is unknown again."""
        self._consuming = False

    async def refresh(self) -> None:
        """Ask what waits (before each sweep); unknown if asking fails."""
        if self._backlog is None:
            return
        try:
            self._waiting = await self._backlog()
        except Exception:  # the broker is away: assume events wait
            self._waiting = None

    @contextmanager
    def handling(self, sent_at: Iterable[datetime | None]) -> Iterator[None]:
        """Hold the horizon at the oldest of these send times while a batch is
        handled; a batch handled successfully moves it on."""
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
        newest = max(moments)  # only after a success: a failed batch's events come back
        if self._last_handled is None or newest > self._last_handled:
            self._last_handled = newest

    def __call__(self) -> datetime:
        """The horizon now: between ``now - max_lag_s`` and now."""
        now = self._clock()
        floor = now - self._max_lag
        if not self._consuming or self._waiting is None:
            return floor
        bounds = list(self._handling.values())
        waiting = self._waiting
        if waiting.held:
            if not waiting.held_known or waiting.oldest_held is None:
                return floor
            bounds.append(waiting.oldest_held)
        if waiting.ready:
            bounds.append(self._last_handled or floor)
        horizon = min(bounds, default=now)
        return max(min(horizon, now), floor)

    def lag_s(self) -> float:
        """How far the horizon trails the clock, in seconds."""
        return (self._clock() - self()).total_seconds()


class HorizonBoard(Protocol):
    """Where replicas publish their horizons (the store)."""

    async def publish_horizon(
        self,
        replica_id: str,
        horizon: datetime,
        ready: int | None = None,
        consumers: int | None = None,
    ) -> None:
        """Record ``replica_id``'s horizon and what it saw of the events queue."""
        ...


async def share_horizon(horizon: EventsHorizon, board: HorizonBoard, replica: str) -> None:
    """Before each sweep: ask what waits, and tell the other replicas the horizon this
    replica can vouch for, with what the broker said (what releases a replica that
    falls silent: see :data:`segue.store.repository.SHARED_HORIZON_SQL`)."""
    await horizon.refresh()
    waiting = horizon.waiting
    if waiting is None:
        await board.publish_horizon(replica, horizon())
    else:
        await board.publish_horizon(replica, horizon(), waiting.ready, waiting.consumers)
