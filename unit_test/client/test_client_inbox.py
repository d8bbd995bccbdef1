"""Routing what arrives on the client's reply queue, and the per-job feeds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from segue.client.feed import JobFeed, UpdateBuffer
from segue.client.inbox import Inbox, Routing
from segue.protocol.codec import InvalidMessageError, encode
from segue.protocol.messages import (
    JobFinished,
    JobProgressed,
    JobReply,
    JobStatus,
    JobStatusChanged,
    WorkflowsReply,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def status(
    job_id: UUID, value: JobStatus = JobStatus.RUNNING, seq: int | None = None
) -> JobStatusChanged:
    return JobStatusChanged(job_id=job_id, status=value, step="prepare", at=NOW, seq=seq)


def progress(job_id: UUID, fraction: float, seq: int | None = None) -> JobProgressed:
    return JobProgressed(job_id=job_id, step="prepare", fraction=fraction, at=NOW, seq=seq)


def finished(job_id: UUID, seq: int | None = None) -> JobFinished:
    return JobFinished(job_id=job_id, status=JobStatus.SUCCEEDED, output={"x": 1}, at=NOW, seq=seq)


async def test_replies_go_to_the_request_with_their_correlation_id() -> None:
    inbox = Inbox()
    future = inbox.expect("c1")
    routed = inbox.deliver(encode(WorkflowsReply(workflows=[])), "c1", None)
    assert routed.routing is Routing.REPLY
    assert future.result() == WorkflowsReply(workflows=[])
    late = inbox.deliver(encode(WorkflowsReply(workflows=[])), "c1", None)
    assert late.routing is Routing.INVALID  # not a request any more, and not an update


async def test_an_undecodable_reply_fails_its_request() -> None:
    inbox = Inbox()
    future = inbox.expect("c1")
    assert inbox.deliver(b"{}", "c1", None).routing is Routing.INVALID
    with pytest.raises(InvalidMessageError):
        future.result()


async def test_updates_go_to_the_feed_of_their_job_once() -> None:
    inbox = Inbox()
    job_id = uuid4()
    feed = inbox.follow(job_id)
    reader = feed.reader()
    assert inbox.deliver(encode(status(job_id)), None, "m1").routing is Routing.UPDATE
    assert inbox.deliver(encode(status(job_id)), None, "m1").routing is Routing.DUPLICATE
    assert inbox.deliver(encode(finished(job_id)), None, "m2").routing is Routing.FINISHED
    assert len(reader) == 2
    assert feed.result == finished(job_id)
    other = inbox.deliver(encode(status(uuid4())), None, None)
    assert other.routing is Routing.UNEXPECTED


async def test_a_terminal_status_without_result_asks_for_a_query() -> None:
    inbox = Inbox()
    job_id = uuid4()
    inbox.follow(job_id)
    routed = inbox.deliver(encode(status(job_id, JobStatus.SUCCEEDED)), None, None)
    assert routed.routing is Routing.TERMINAL_STATUS
    assert routed.job_id == job_id


async def test_an_update_older_than_the_last_seen_is_dropped() -> None:
    inbox = Inbox()
    job_id = uuid4()
    feed = inbox.follow(job_id)
    reader = feed.reader()
    assert inbox.deliver(encode(progress(job_id, 0.5, seq=4)), None, None).routing is Routing.UPDATE
    older = inbox.deliver(encode(progress(job_id, 0.2, seq=3)), None, None)
    assert older.routing is Routing.STALE
    assert "seq 3" in older.reason
    same = inbox.deliver(encode(status(job_id, seq=4)), None, None)
    assert same.routing is Routing.STALE, "a repeated seq is no newer"
    assert inbox.deliver(encode(progress(job_id, 0.7, seq=5)), None, None).routing is Routing.UPDATE
    assert [await reader.get() for _ in range(len(reader))] == [
        progress(job_id, 0.5, seq=4),
        progress(job_id, 0.7, seq=5),
    ]
    assert feed.last_seq == 5


async def test_a_status_or_progress_after_the_result_is_ignored() -> None:
    inbox = Inbox()
    job_id = uuid4()
    feed = inbox.follow(job_id)
    backlog = feed.reader()
    assert inbox.deliver(encode(finished(job_id, seq=9)), None, None).routing is Routing.FINISHED
    late_status = inbox.deliver(encode(status(job_id, seq=7)), None, None)
    late_progress = inbox.deliver(encode(progress(job_id, 0.9, seq=8)), None, None)
    assert (late_status.routing, late_progress.routing) == (Routing.STALE, Routing.STALE)
    assert len(backlog) == 1
    assert await backlog.get() == finished(job_id, seq=9)
    assert feed.first == finished(job_id, seq=9)


async def test_updates_without_seq_are_never_dropped() -> None:
    inbox = Inbox()
    job_id = uuid4()
    feed = inbox.follow(job_id)
    reader = feed.reader()
    inbox.deliver(encode(status(job_id, seq=3)), None, None)
    refused = JobFinished(job_id=job_id, status=JobStatus.FAILED, at=NOW)  # no seq
    assert inbox.deliver(encode(refused), None, None).routing is Routing.FINISHED
    assert len(reader) == 2
    assert feed.result == refused
    assert feed.last_seq == 3


def test_garbage_is_reported_not_raised() -> None:
    inbox = Inbox()
    assert inbox.deliver(b"not json", None, None).routing is Routing.INVALID
    reply = encode(JobReply(job_id=uuid4(), job=None))
    assert inbox.deliver(reply, "unknown", None).routing is Routing.INVALID


def test_dedup_memory_is_bounded() -> None:
    inbox = Inbox(seen_limit=2)
    job_id = uuid4()
    inbox.follow(job_id)
    body = encode(progress(job_id, 0.1))
    for message_id in ("a", "b", "c"):
        assert inbox.deliver(body, None, message_id).routing is Routing.UPDATE
    assert inbox.deliver(body, None, "a").routing is Routing.UPDATE  # forgotten
    assert inbox.deliver(body, None, "c").routing is Routing.DUPLICATE


async def test_buffer_drops_old_progress_first_when_full() -> None:
    job_id = uuid4()
    buffer = UpdateBuffer(limit=3)
    buffer.put(status(job_id))
    buffer.put(progress(job_id, 0.1))
    buffer.put(progress(job_id, 0.2))
    buffer.put(progress(job_id, 0.3))
    buffer.put(finished(job_id))
    got = [await buffer.get() for _ in range(len(buffer))]
    assert got == [status(job_id), progress(job_id, 0.3), finished(job_id)]


async def test_feed_readers() -> None:
    job_id = uuid4()
    feed = JobFeed(job_id)
    feed.push(status(job_id))
    backlog = feed.reader()
    live = feed.reader()
    feed.push(finished(job_id))
    assert [await backlog.get(), await backlog.get()] == [status(job_id), finished(job_id)]
    assert await live.get() == finished(job_id)
    late = feed.reader()
    assert await late.get() == finished(job_id)
    assert await feed.wait_first() == status(job_id)
    assert await asyncio.wait_for(feed.wait_result(), 1) == finished(job_id)
