"""The updates of one followed job, fanned out to whoever reads them."""

from __future__ import annotations

import asyncio
from collections import deque
from uuid import UUID

from segue.protocol.messages import JobFinished, JobProgressed, Update

DEFAULT_BUFFER_LIMIT = 1000


class UpdateBuffer:
    """An unbounded-in-time, bounded-in-size queue of updates for one reader.

    When it holds ``limit`` updates, the oldest progress update is dropped to
    make room: progress is superseded by later progress, while status changes
    and the result are never dropped.
    """

    def __init__(self, limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        self._items: deque[Update] = deque()
        self._limit = limit
        self._available = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, update: Update) -> None:
        """Append ``update``, dropping the oldest progress update if full."""
        if len(self._items) >= self._limit:
            for index, item in enumerate(self._items):
                if isinstance(item, JobProgressed):
                    del self._items[index]
                    break
        self._items.append(update)
        self._available.set()

    async def get(self) -> Update:
        """The oldest update, waiting for one if there is none."""
        while not self._items:
            self._available.clear()
            await self._available.wait()
        return self._items.popleft()


class JobFeed:
    """Everything the client hears about one job, from the moment it follows it.

    Readers created before the result arrives get every update from their
    creation on; the first reader also gets what arrived before any reader
    existed (the backlog). A reader created after the result gets the result.

    Updates may arrive out of order (e.g. a status change published again
    after the result): the feed keeps the highest ``seq`` it saw and drops an
    update whose ``seq`` is not above it. An update without ``seq`` (a refused
    submission, a result rebuilt from a query) is never dropped.
    """

    def __init__(self, job_id: UUID, buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        self.job_id = job_id
        self._buffer_limit = buffer_limit
        self._backlog: UpdateBuffer | None = UpdateBuffer(buffer_limit)
        self._readers: list[UpdateBuffer] = [self._backlog]
        self._first: Update | None = None
        self._result: JobFinished | None = None
        self._last_seq: int | None = None
        self._got_first = asyncio.Event()
        self._got_result = asyncio.Event()

    @property
    def result(self) -> JobFinished | None:
        """The job's result, once known."""
        return self._result

    @property
    def first(self) -> Update | None:
        """The first update heard about the job, if any."""
        return self._first

    @property
    def last_seq(self) -> int | None:
        """The highest ``seq`` of the updates taken so far (None: none carried one)."""
        return self._last_seq

    def push(self, update: Update) -> bool:
        """Hand ``update`` to every reader and remember the first update and the result.

        Returns False, and does nothing, for a stale update: one whose ``seq`` is
        not above :attr:`last_seq`.
        """
        if update.seq is not None:
            if self._last_seq is not None and update.seq <= self._last_seq:
                return False
            self._last_seq = update.seq
        for reader in self._readers:
            reader.put(update)
        if self._first is None:
            self._first = update
            self._got_first.set()
        if isinstance(update, JobFinished) and self._result is None:
            self._result = update
            self._got_result.set()
        return True

    def reader(self) -> UpdateBuffer:
        """A new reader (the backlog, for the first one); release it with :meth:`release`."""
        if self._backlog is not None:
            reader, self._backlog = self._backlog, None
            return reader
        reader = UpdateBuffer(self._buffer_limit)
        if self._result is not None:
            reader.put(self._result)
        self._readers.append(reader)
        return reader

    def release(self, reader: UpdateBuffer) -> None:
        """Stop feeding ``reader``."""
        if reader in self._readers:
            self._readers.remove(reader)

    async def wait_first(self) -> Update:
        """The first update, waiting for it if need be."""
        await self._got_first.wait()
        assert self._first is not None
        return self._first

    async def wait_result(self) -> JobFinished:
        """The result, waiting for it if need be."""
        await self._got_result.wait()
        assert self._result is not None
        return self._result
