"""Publishes committed outbox messages and keeps the outbox small.

Right after a batch commits, the applier hands its messages to :meth:`OutboxRelay.send`,
which publishes them from memory with every confirm in flight at once. The rows of
confirmed messages are deleted by a background loop (:meth:`OutboxRelay.run`) in one
cheap statement per few milliseconds. The same loop publishes rows older than the
grace period: what a crash, a broker outage or a refused publish left behind. A
row the broker keeps refusing is set aside with a growing back-off, so it never
holds up the rows behind it; after :data:`QUARANTINE_AFTER` refusals it is
quarantined in the database with the broker's reason (``segue outbox list`` shows
it, ``segue outbox release`` puts it back). A task quarantined this way is not
waited for forever: its step's dispatch deadline ends the attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from segue.broker.publisher import Publisher
from segue.errors import describe
from segue.protocol.envelope import Outgoing
from segue.store.repository import OutboxClaim, OutboxRow

RELAY_BATCH = 200
DELETE_DELAY_S = 0.02
"""How long confirmed rows wait, to be deleted together with the next ones."""
MAX_BACKOFF_S = 300.0
OUTAGE_AFTER = 3
"""Rows failing alone one after the other that mean the broker is away, not the rows."""
QUARANTINE_AFTER = 8
"""Refusals of one row (with the broker otherwise taking messages) before it is
quarantined: with the back-off doubling from the relay interval, about ten minutes."""


class RelayStore(Protocol):
    """What the relay needs of the store (see :class:`segue.store.repository.Store`)."""

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        """Delete published rows."""
        ...

    def claim_outbox(
        self, older_than: datetime, limit: int, skip: Sequence[int] = ()
    ) -> AbstractAsyncContextManager[OutboxClaim]:
        """Lock rows older than ``older_than`` for publishing (never quarantined ones)."""
        ...

    async def quarantine_outbox(self, row_id: int, failures: int, reason: str) -> None:
        """Set a row aside with the reason."""
        ...


@dataclass
class _Refused:
    failures: int
    retry_at: float


class OutboxRelay:
    """Moves outbox rows to the broker and deletes them once confirmed."""

    def __init__(
        self,
        store: RelayStore,
        publisher: Publisher,
        clock: Callable[[], datetime],
        interval_s: float,
        grace_s: float,
        on_quarantine: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._interval_s = interval_s
        self._grace = timedelta(seconds=grace_s)
        self._confirmed: list[int] = []
        self._have_confirmed = asyncio.Event()
        self._refused: dict[int, _Refused] = {}
        self._on_quarantine = on_quarantine
        self._log = structlog.get_logger("segue.relay")

    async def send(self, rows: Sequence[OutboxRow], notices: Sequence[Outgoing] = ()) -> int:
        """Publish committed rows and notices; returns how many rows were not confirmed.

        Unconfirmed rows stay in the outbox for the relay loop; notices are not retried.
        """
        messages = [row.message for row in rows]
        confirmed = await self._publisher.publish_all([*messages, *notices])
        ids = [row.id for row, ok in zip(rows, confirmed, strict=False) if ok]
        if ids:
            self._confirmed.extend(ids)
            self._have_confirmed.set()
        missed = len(rows) - len(ids)
        if missed or not all(confirmed):
            self._log.warning(
                "outbox_publish_deferred",
                rows=missed,
                notices_lost=len(notices) - sum(confirmed[len(rows) :]),
            )
        return missed

    async def run(self) -> None:
        """Forever: delete confirmed rows soon after they are confirmed, and every
        ``interval_s`` publish the rows left behind."""
        next_sweep = time.monotonic()
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._have_confirmed.wait(), max(0.0, next_sweep - time.monotonic())
                )
            try:
                if self._have_confirmed.is_set():
                    await asyncio.sleep(DELETE_DELAY_S)
                    await self.flush_confirmed()
                if time.monotonic() >= next_sweep:
                    while await self.publish_leftovers() == RELAY_BATCH:
                        pass
                    next_sweep = time.monotonic() + self._interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("outbox_relay_failed", error=describe(exc))
                await asyncio.sleep(self._interval_s)

    async def flush_confirmed(self) -> None:
        """Delete the rows confirmed so far (given back if the delete fails)."""
        self._have_confirmed.clear()
        ids, self._confirmed = self._confirmed, []
        try:
            await self._store.delete_outbox(ids)
        except BaseException:
            self._confirmed.extend(ids)
            self._have_confirmed.set()
            raise

    async def publish_leftovers(self) -> int:
        """Publish one batch of rows older than the grace period; returns how many were due."""
        older_than = self._clock() - self._grace
        now = time.monotonic()
        skip = [row_id for row_id, refused in self._refused.items() if refused.retry_at > now]
        async with self._store.claim_outbox(older_than, RELAY_BATCH, skip) as claim:
            confirmed = await self._publisher.publish_all([row.message for row in claim.rows])
            if len(claim.rows) > 1 and not any(confirmed):
                confirmed = await self._one_by_one(claim.rows)
            published = [row.id for row, ok in zip(claim.rows, confirmed, strict=True) if ok]
            await claim.delete(published)
        await self._note_refusals(claim.rows, confirmed)
        if published:
            self._log.info("outbox_relayed", rows=len(published))
        return len(claim.rows)

    async def _one_by_one(self, rows: Sequence[OutboxRow]) -> list[bool]:
        """Publish alone each row of a batch the broker refused as a whole.

        One bad row (say, to an exchange that was deleted) can close the channel
        and fail its neighbours; alone, only it fails. When the first
        ``OUTAGE_AFTER`` rows all fail alone too, the broker itself is away: stop.
        """
        confirmed: list[bool] = []
        for row in rows:
            confirmed.append((await self._publisher.publish_all([row.message]))[0])
            if len(confirmed) == OUTAGE_AFTER and not any(confirmed):
                return [False] * len(rows)
        return confirmed

    async def _note_refusals(self, rows: Sequence[OutboxRow], confirmed: Sequence[bool]) -> None:
        if not any(confirmed):
            return  # the broker is away: nothing singles out a row
        now = time.monotonic()
        for row, ok in zip(rows, confirmed, strict=True):
            if ok:
                self._refused.pop(row.id, None)
                continue
            failures = self._refused[row.id].failures + 1 if row.id in self._refused else 1
            if failures >= QUARANTINE_AFTER:
                await self._quarantine(row, failures)
                continue
            backoff = min(MAX_BACKOFF_S, self._interval_s * 2**failures)
            self._refused[row.id] = _Refused(failures, now + backoff)
            self._log.warning(
                "outbox_row_refused",
                row_id=row.id,
                exchange=row.message.exchange,
                routing_key=row.message.routing_key,
                failures=failures,
                retry_in_s=backoff,
            )

    async def _quarantine(self, row: OutboxRow, failures: int) -> None:
        """Set aside a row refused ``failures`` times, with the broker's reason (one
        last try tells it; should that one be taken, the row is simply published)."""
        try:
            await self._publisher.publish(row.message)
        except Exception as exc:
            reason = describe(exc)
        else:
            self._refused.pop(row.id, None)
            await self._store.delete_outbox([row.id])
            return
        await self._store.quarantine_outbox(row.id, failures, reason)
        self._refused.pop(row.id, None)
        if self._on_quarantine is not None:
            self._on_quarantine()
        self._log.error(
            "outbox_row_quarantined",
            row_id=row.id,
            exchange=row.message.exchange,
            routing_key=row.message.routing_key,
            failures=failures,
            reason=reason,
        )
