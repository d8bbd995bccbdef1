"""Publishes outbox rows with publisher confirms and deletes them once confirmed.

Right after a transaction commits, the handler publishes the rows it wrote
(:meth:`OutboxRelay.publish_now`); a loop (:meth:`OutboxRelay.run`) publishes
whatever a crash or a broker outage left behind. Rows are claimed with
``FOR UPDATE SKIP LOCKED``, so replicas and both paths never publish one row
at the same time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog

from segue.broker.publisher import ConfirmedPublisher, Outgoing
from segue.store.repository import Store, StoredOutboxMessage

RELAY_BATCH = 200


class OutboxRelay:
    """Moves outbox rows to the broker."""

    def __init__(
        self,
        store: Store,
        publisher: ConfirmedPublisher,
        clock: Callable[[], datetime],
        interval_s: float,
        grace_s: float,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._interval_s = interval_s
        self._grace = timedelta(seconds=grace_s)
        self._log = structlog.get_logger("segue.relay")

    async def publish_now(self, ids: Sequence[int]) -> None:
        """Publish the rows a handler just committed; on failure leave them to the loop."""
        if not ids:
            return
        try:
            await self._publish_claimed(ids=ids, older_than=None, limit=len(ids))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.warning("outbox_publish_deferred", rows=len(ids), error=str(exc))

    async def run(self) -> None:
        """Publish leftover rows forever, every ``interval_s``."""
        while True:
            try:
                while await self.publish_leftovers() == RELAY_BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("outbox_relay_failed", error=str(exc))
            await asyncio.sleep(self._interval_s)

    async def publish_leftovers(self) -> int:
        """Publish one batch of rows older than the grace period; returns how many."""
        older_than = self._clock() - self._grace
        published = await self._publish_claimed(ids=None, older_than=older_than, limit=RELAY_BATCH)
        if published:
            self._log.info("outbox_relayed", rows=published)
        return published

    async def _publish_claimed(
        self, ids: Sequence[int] | None, older_than: datetime | None, limit: int
    ) -> int:
        async with self._store.claim_outbox(ids=ids, older_than=older_than, limit=limit) as batch:
            rows = batch.messages
            await asyncio.gather(*(self._publisher.publish(_outgoing(row)) for row in rows))
            await batch.done([row.id for row in rows])
        return len(rows)


def _outgoing(row: StoredOutboxMessage) -> Outgoing:
    return Outgoing(
        exchange=row.exchange,
        routing_key=row.routing_key,
        body=row.body,
        message_id=row.message_id,
        priority=row.priority,
        headers=dict(row.headers),
    )
