"""What arrives on the client's reply queue, routed: replies to the request
waiting for them (by correlation id), updates to the feed of their job (which
drops those older than one it already has).

Pure routing, no I/O: the client hands every delivery to :meth:`Inbox.deliver`
and acts on what it returns.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from segue.client.feed import JobFeed
from segue.protocol.codec import REPLY_ADAPTER, UPDATE_ADAPTER, InvalidMessageError, decode
from segue.protocol.messages import JobFinished, JobStatusChanged, Reply

DEFAULT_SEEN_LIMIT = 10_000


class Routing(StrEnum):
    """What became of a delivery."""

    REPLY = "reply"
    UPDATE = "update"
    FINISHED = "finished"
    """A result: the job will send nothing more (until it is run again)."""
    TERMINAL_STATUS = "terminal_status"
    """A terminal status without a result yet (e.g. answering a duplicate
    submission of a finished job): the result must be queried."""
    DUPLICATE = "duplicate"
    STALE = "stale"
    """An update not newer (by ``seq``) than one already seen of its job: dropped."""
    UNEXPECTED = "unexpected"
    """Nobody waits for it: a late reply or an update of a job no longer followed."""
    INVALID = "invalid"


@dataclass(frozen=True)
class Routed:
    """The outcome of routing one delivery."""

    routing: Routing
    job_id: UUID | None = None
    reason: str = ""


class Inbox:
    """Pending requests and followed jobs of one client."""

    def __init__(self, seen_limit: int = DEFAULT_SEEN_LIMIT) -> None:
        self._requests: dict[str, asyncio.Future[Reply]] = {}
        self._feeds: dict[UUID, JobFeed] = {}
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._seen_limit = seen_limit

    def expect(self, correlation_id: str) -> asyncio.Future[Reply]:
        """A future for the reply carrying ``correlation_id``."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._requests[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        """Stop waiting for the reply to ``correlation_id``."""
        self._requests.pop(correlation_id, None)

    def follow(self, job_id: UUID) -> JobFeed:
        """The feed of ``job_id``, created if the job was not followed yet."""
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = JobFeed(job_id)
        return feed

    def unfollow(self, job_id: UUID) -> None:
        """Stop routing updates of ``job_id`` (readers keep what they have)."""
        self._feeds.pop(job_id, None)

    def feeds(self) -> list[JobFeed]:
        """Every followed job's feed."""
        return list(self._feeds.values())

    def deliver(self, body: bytes, correlation_id: str | None, message_id: str | None) -> Routed:
        """Route one delivery: a reply if its correlation id is awaited, else an update."""
        if correlation_id is not None and correlation_id in self._requests:
            return self._deliver_reply(body, correlation_id)
        if message_id and self._seen_before(message_id):
            return Routed(Routing.DUPLICATE)
        try:
            update = decode(UPDATE_ADAPTER, body)
        except InvalidMessageError as exc:
            return Routed(Routing.INVALID, exc.job_id, exc.reason)
        feed = self._feeds.get(update.job_id)
        if feed is None:
            return Routed(Routing.UNEXPECTED, update.job_id, f"{update.type} of an unfollowed job")
        if not feed.push(update):
            reason = f"{update.type} seq {update.seq} is not above seq {feed.last_seq}"
            return Routed(Routing.STALE, update.job_id, reason)
        if isinstance(update, JobFinished):
            return Routed(Routing.FINISHED, update.job_id)
        if isinstance(update, JobStatusChanged) and update.status.is_terminal:
            return Routed(Routing.TERMINAL_STATUS, update.job_id)
        return Routed(Routing.UPDATE, update.job_id)

    def _deliver_reply(self, body: bytes, correlation_id: str) -> Routed:
        future = self._requests.pop(correlation_id)
        try:
            reply = decode(REPLY_ADAPTER, body)
        except InvalidMessageError as exc:
            if not future.done():
                future.set_exception(exc)
            return Routed(Routing.INVALID, exc.job_id, exc.reason)
        if not future.done():
            future.set_result(reply)
        return Routed(Routing.REPLY)

    def _seen_before(self, message_id: str) -> bool:
        if message_id in self._seen:
            return True
        self._seen.add(message_id)
        self._seen_order.append(message_id)
        if len(self._seen_order) > self._seen_limit:
            self._seen.discard(self._seen_order.popleft())
        return False
