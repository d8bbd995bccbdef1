"""Batches that share a job take turns, in the order they were taken from the queue.

The commands queue is handled by several batches at once, so one batch's
commit and publishes overlap the next batch's work. Commands about one job
must still apply in the order they arrived: a retry sent after a cancel must
not be judged before it, a query sent after a submission must see the job.
So each batch claims its job ids as soon as it is taken, before its first
``await`` (a batch consumer takes batches in queue order and a handler runs
synchronously up to its first ``await``, so claims are made in queue order),
and waits only for the earlier batches that claimed one of the same jobs.
Batches about different jobs do not wait for each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class Turn:
    """One batch's claim: wait for :meth:`ready`, call :meth:`done` when finished."""

    def __init__(
        self,
        before: set[asyncio.Future[None]],
        mine: asyncio.Future[None],
        forget: Callable[[], None],
    ) -> None:
        self._before = before
        self._mine = mine
        self._forget = forget

    async def ready(self) -> None:
        """Wait until every earlier batch that shares a job with this one is done."""
        if self._before:
            await asyncio.wait(self._before)

    def done(self) -> None:
        """Let the later batches that wait for this one go on."""
        if not self._mine.done():
            self._mine.set_result(None)
            self._forget()


class Turns(Generic[Key]):
    """Hands out turns by key; at most one claim per key is remembered (the latest)."""

    def __init__(self) -> None:
        self._latest: dict[Key, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def claim(self, keys: Iterable[Key]) -> Turn:
        """Claim ``keys`` now (no ``await`` before this in the batch's handler).

        The turn waits for the latest earlier claim of each key; each of those
        waited for the claims before it, so order holds along every key.
        """
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before: set[asyncio.Future[None]] = set()
        claimed = set(keys)
        for key in claimed:
            earlier = self._latest.get(key)
            if earlier is not None and not earlier.done():
                before.add(earlier)
            self._latest[key] = mine
        return Turn(before, mine, lambda: self._forget(claimed, mine))

    def _forget(self, keys: set[Key], finished: asyncio.Future[None]) -> None:
        for key in keys:
            if self._latest.get(key) is finished:
                del self._latest[key]
