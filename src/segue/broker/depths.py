"""How many messages wait in queues, asked of the broker with passive declares.

A passive declare reports a queue's ready messages without creating or
changing it. It runs on a channel of its own, straight on the channel under
the robust one (which would otherwise redeclare the queue after a
reconnect); a queue that does not exist closes that channel, so the channel
is opened again for the next queue and the missing one is left out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from segue.logs import library_logger

DECLARE_TIMEOUT_S = 5.0


class QueueDepths:
    """Ready-message counts of named queues, on a channel of its own."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._log = library_logger("segue.depths")

    async def __call__(self, queues: Iterable[str]) -> dict[str, int]:
        """Ready messages per queue; queues the broker does not have are left out."""
        depths: dict[str, int] = {}
        for queue in queues:
            depth = await self._depth(queue)
            if depth is not None:
                depths[queue] = depth
        return depths

    async def _depth(self, queue: str) -> int | None:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        underlay = await self._channel.get_underlay_channel()
        try:
            async with asyncio.timeout(DECLARE_TIMEOUT_S):
                declared = await underlay.queue_declare(queue, passive=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.debug("queue_depth_unknown", queue=queue, error=str(exc))
            channel, self._channel = self._channel, None  # the broker closed it (404), or stuck
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
            return None
        return int(declared.message_count or 0)
