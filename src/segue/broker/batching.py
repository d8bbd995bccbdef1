"""Consuming a queue in batches: whatever has been delivered is handled together.

A batch is what the broker has delivered by the time a handler is free, up to
``max_batch`` messages: no timer waits for more, so a lone message is handled
at once, and under load batches grow by themselves (group commit). ``workers``
batches may be handled at once, so one batch's commit and publishes overlap
the next batch's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, ConsumerTag

from segue.broker.acks import BatchAcks
from segue.broker.boundary import BatchHandler, ConsumeBoundary, Outcome, Verdict
from segue.logs import library_logger

RETURNED_HOLD_S = 10.0
"""How long messages given back to the queue keep counting as held (see
:meth:`BatchConsumer.forget_returned`)."""


class BatchConsumer:
    """Consumes one queue and settles its messages a batch at a time."""

    def __init__(
        self,
        queue: AbstractQueue,
        boundary: ConsumeBoundary,
        handler: BatchHandler,
        max_batch: int,
        workers: int = 2,
        acks: BatchAcks | None = None,
    ) -> None:
        if max_batch < 1 or workers < 1:
            raise ValueError("max_batch and workers must be at least 1")
        self._queue = queue
        self._boundary = boundary
        self._handler = handler
        self._max_batch = max_batch
        self._workers = workers
        self._acks = acks
        self._delivered: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tag: ConsumerTag | None = None
        self._log = library_logger("segue.consumer")
        self._loops: list[asyncio.Task[None]] = []
        self._held: dict[int, datetime | None] = {}
        self._returned: list[tuple[float, datetime | None]] = []

    @property
    def name(self) -> str:
        """The consumed queue's name."""
        return self._queue.name

    @property
    def unsettled(self) -> int:
        """Messages delivered but not settled yet: waiting for a batch, or in one."""
        return len(self._held)

    def held(self) -> tuple[int, datetime | None, bool]:
        """The messages held unsettled or given back to the queue since
        :meth:`forget_returned`: how many, their oldest ``timestamp``, and whether
        every one of them had a timestamp (if not, the oldest is not known)."""
        stamps = [*self._held.values(), *(stamp for _, stamp in self._returned)]
        known = [stamp for stamp in stamps if stamp is not None]
        return len(stamps), min(known, default=None), len(known) == len(stamps)

    def forget_returned(self, held_for_s: float = RETURNED_HOLD_S) -> None:
        """The queue was found empty: what was given back has been taken again, by
        this consumer or another replica's. Messages given back less than
        ``held_for_s`` ago are still counted: another replica that took them may
        not have told the others yet (it does once per sweep)."""
        cutoff = time.monotonic() - held_for_s
        self._returned = [(at, stamp) for at, stamp in self._returned if at > cutoff]

    async def start(self) -> None:
        """Start consuming."""
        self._loops = [
            asyncio.create_task(self._loop(), name=f"batches-{self.name}-{n}")
            for n in range(self._workers)
        ]
        self._tag = await self._queue.consume(self._on_delivery)

    async def stop(self, timeout_s: float) -> int:
        """Stop consuming, finish what was delivered (up to ``timeout_s``); returns how
        many messages were left unsettled (the broker delivers them again)."""
        if self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
            self._tag = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), timeout_s)
        left = self._delivered.qsize() + self._busy
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        return left

    async def _drained(self) -> None:
        while self._delivered.qsize() or self._busy:
            await self._idle.wait()
            await asyncio.sleep(0)

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        self._held[id(message)] = message.timestamp
        if self._acks is not None:
            self._acks.track(message)
        self._delivered.put_nowait(message)

    async def _loop(self) -> None:
        while True:
            batch = [await self._delivered.get()]
            while len(batch) < self._max_batch and not self._delivered.empty():
                batch.append(self._delivered.get_nowait())
            self._busy += 1
            self._idle.clear()
            outcomes: list[Outcome] = []
            try:
                outcomes = await self._boundary.settle_batch(
                    self.name, batch, self._handler, self._acks
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. an ack on a channel the broker closed
                # Unsettled messages come back once the channel is reopened.
                self._log.warning("batch_settle_failed", messages=len(batch), error=repr(exc))
                outcomes = [Outcome(Verdict.REQUEUE, repr(exc))] * len(batch)
            finally:
                if self._acks is not None:
                    self._acks.forget(batch)
                returned_at = time.monotonic()
                for message, outcome in zip(batch, outcomes, strict=False):
                    stamp = self._held.pop(id(message), None)
                    if outcome.verdict is Verdict.REQUEUE:
                        self._returned.append((returned_at, stamp))
                for message in batch[len(outcomes) :]:
                    self._returned.append((returned_at, self._held.pop(id(message), None)))
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()
