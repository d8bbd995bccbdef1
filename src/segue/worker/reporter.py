"""Sending worker events to the orchestrator's events queue, with confirms.

An event that matters (started, progress, result) is retried with backoff
until the broker confirms it or the worker closes the reporter: a broker
restart in the middle of a step must not lose the step's result. Heartbeats
are sent once; the next one is due soon anyway.

Every event leaves with ``sent_at`` set (the orchestrator judges deadlines by
the send time of the events it handles): an event built without it is
stamped when it is first published (its retries keep that time).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol
from uuid import uuid4

from segue.broker.publisher import ConfirmedPublisher, Outgoing
from segue.logs import library_logger
from segue.protocol.codec import encode
from segue.protocol.messages import WorkerEvent


def retry_delays(initial_s: float = 0.2, max_s: float = 10.0) -> Iterator[float]:
    """Endless capped exponential delays, each jittered down by up to half.

    The jitter keeps many workers that lost the broker together from retrying
    in lockstep when it comes back.
    """
    delay = initial_s
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(delay * 2, max_s)


class EventSink(Protocol):
    """Where an attempt's events go (an :class:`EventReporter`, or a fake in tests)."""

    async def send(self, event: WorkerEvent) -> bool:
        """Deliver ``event``, retrying; False if given up."""
        ...

    async def send_once(self, event: WorkerEvent) -> bool:
        """Try to deliver ``event`` once; False if that failed."""
        ...

    async def send_or_raise(self, event: WorkerEvent) -> None:
        """Deliver ``event`` once or raise."""
        ...


class EventReporter:
    """Publishes worker events to the events queue through its exchange."""

    def __init__(
        self, publisher: ConfirmedPublisher, events_exchange: str, events_queue: str
    ) -> None:
        self._publisher = publisher
        self._events_exchange = events_exchange
        self._events_queue = events_queue
        self._closed = asyncio.Event()
        self._log = library_logger("segue.worker")

    def close(self) -> None:
        """Give up on events still being retried (the worker is going away)."""
        self._closed.set()

    async def send(self, event: WorkerEvent) -> bool:
        """Publish ``event``, retrying until confirmed; False if closed before that."""
        outgoing = self._outgoing(event)
        for delay in retry_delays():
            if await self._try(outgoing, event):
                return True
            if await self._closed_within(delay):
                self._log.warning("event_abandoned", event_type=type(event).__name__)
                return False
        raise AssertionError("unreachable: retry_delays() is endless")

    async def send_once(self, event: WorkerEvent) -> bool:
        """Publish ``event`` once; False (and a warning) if that failed."""
        return await self._try(self._outgoing(event), event)

    async def send_or_raise(self, event: WorkerEvent) -> None:
        """Publish ``event`` once; raise if the broker did not confirm it."""
        await self._publisher.publish(self._outgoing(event))

    def _outgoing(self, event: WorkerEvent) -> Outgoing:
        # One message id for every retry, so the orchestrator can tell duplicates.
        if event.sent_at is None:
            event = event.model_copy(update={"sent_at": datetime.now(UTC)})
        return Outgoing(
            exchange=self._events_exchange,
            routing_key=self._events_queue,
            body=encode(event),
            message_id=uuid4().hex,
            timestamp=event.sent_at,
        )

    async def _try(self, outgoing: Outgoing, event: WorkerEvent) -> bool:
        # No race against close() here: a publish ends by itself (confirmed, refused,
        # or failed with the connection), and the worker cancels the attempts whose
        # events are still on their way when it gives up on them at shutdown.
        if self._closed.is_set():
            return False
        try:
            await self._publisher.publish(outgoing)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._log.warning(
                "event_publish_failed",
                event_type=type(event).__name__,
                error=f"{type(error).__name__}: {error}",
            )
            return False
        return True

    async def _closed_within(self, delay_s: float) -> bool:
        try:
            await asyncio.wait_for(self._closed.wait(), delay_s)
        except TimeoutError:
            return False
        return True
