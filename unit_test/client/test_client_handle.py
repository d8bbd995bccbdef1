"""What a job handle tells its user, driven by a feed without any broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from segue.client import (
    JobRejectedError,
    SegueClient,
    UpdateTimeoutError,
    finished_from_view,
)
from segue.client.feed import JobFeed
from segue.client.handle import JobHandle
from segue.protocol import kinds
from segue.protocol.messages import (
    ErrorInfo,
    JobFinished,
    JobProgressed,
    JobStatus,
    JobStatusChanged,
    JobView,
    Update,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


class Orchestrator:
    """Answers the handle's catch-up queries, counting them."""

    def __init__(self, feed: JobFeed, finished: JobFinished | None) -> None:
        self.feed = feed
        self.finished = finished
        self.queries = 0

    async def catch_up(self) -> None:
        self.queries += 1
        if self.finished is not None:
            self.feed.push(self.finished)


def make_handle(
    job_id: UUID, on_catch_up: JobFinished | None = None, *, query_first: bool = True
) -> tuple[JobHandle, JobFeed]:
    handle, feed, _ = make_counted_handle(job_id, on_catch_up, query_first=query_first)
    return handle, feed


def make_counted_handle(
    job_id: UUID, on_catch_up: JobFinished | None = None, *, query_first: bool = True
) -> tuple[JobHandle, JobFeed, Orchestrator]:
    feed = JobFeed(job_id)
    orchestrator = Orchestrator(feed, on_catch_up)
    handle = JobHandle(
        job_id,
        feed,
        SegueClient(),
        orchestrator.catch_up,
        query_first=query_first,
        final_check_s=0.5,
    )
    return handle, feed, orchestrator


@pytest.mark.parametrize("kind", sorted(kinds.REJECTION_KINDS))
async def test_a_rejected_submission_raises(kind: str) -> None:
    job_id = uuid4()
    handle, feed = make_handle(job_id)
    error = ErrorInfo(kind=kind, message="horizon_years: must be <= 50")
    feed.push(JobFinished(job_id=job_id, status=JobStatus.FAILED, error=error, at=NOW))
    with pytest.raises(JobRejectedError, match="horizon_years") as caught:
        await handle.accepted(timeout=1)
    assert caught.value.kind == kind


async def test_a_job_that_failed_while_running_was_accepted() -> None:
    job_id = uuid4()
    handle, feed = make_handle(job_id)
    error = ErrorInfo(kind="DemoFailure", message="boom")
    result = JobFinished(job_id=job_id, status=JobStatus.FAILED, error=error, at=NOW)
    feed.push(result)
    assert await handle.accepted(timeout=1) == result


async def test_accepted_times_out_clearly() -> None:
    handle, _ = make_handle(uuid4())
    with pytest.raises(UpdateTimeoutError, match="orchestrator"):
        await handle.accepted(timeout=0.05)


async def test_updates_end_after_the_result() -> None:
    job_id = uuid4()
    handle, feed = make_handle(job_id)
    sent: list[Update] = [
        JobStatusChanged(job_id=job_id, status=JobStatus.RUNNING, step="a", at=NOW),
        JobProgressed(job_id=job_id, step="a", fraction=0.5, at=NOW),
        JobFinished(job_id=job_id, status=JobStatus.SUCCEEDED, at=NOW),
    ]
    for update in sent:
        feed.push(update)
    got = [update async for update in handle.updates()]
    assert got == sent


async def test_a_followed_job_is_queried_first_and_its_result_comes_from_the_query() -> None:
    job_id = uuid4()
    done = JobFinished(job_id=job_id, status=JobStatus.CANCELLED, at=NOW)
    handle, _, orchestrator = make_counted_handle(job_id, on_catch_up=done, query_first=True)
    assert await handle.result(timeout=1) == done
    assert await handle.result(timeout=1) == done
    assert orchestrator.queries == 1


async def test_a_submitted_job_waits_for_its_result_without_querying() -> None:
    job_id = uuid4()
    handle, feed, orchestrator = make_counted_handle(job_id, query_first=False)
    waiting = asyncio.create_task(handle.result(timeout=1))
    await asyncio.sleep(0.01)
    done = JobFinished(job_id=job_id, status=JobStatus.SUCCEEDED, output={"a": 1}, at=NOW)
    feed.push(done)
    assert await waiting == done
    assert orchestrator.queries == 0


async def test_result_times_out_clearly_after_asking_once_more() -> None:
    handle, _, orchestrator = make_counted_handle(uuid4(), query_first=False)
    with pytest.raises(UpdateTimeoutError, match="did not finish"):
        await handle.result(timeout=0.05)
    assert orchestrator.queries == 1


async def test_a_result_missed_is_found_by_the_query_on_timeout() -> None:
    job_id = uuid4()
    done = JobFinished(job_id=job_id, status=JobStatus.SUCCEEDED, at=NOW)
    handle, _, orchestrator = make_counted_handle(job_id, on_catch_up=done, query_first=False)
    assert await handle.result(timeout=0.05) == done
    assert orchestrator.queries == 1


async def test_a_slow_final_query_does_not_hold_the_timeout_for_long() -> None:
    feed = JobFeed(uuid4())

    async def never_answers() -> None:
        await asyncio.sleep(60)

    handle = JobHandle(
        feed.job_id, feed, SegueClient(), never_answers, query_first=False, final_check_s=0.05
    )
    with pytest.raises(UpdateTimeoutError):
        await asyncio.wait_for(handle.result(timeout=0.05), 1)


def view(status: JobStatus, **fields: object) -> JobView:
    data: dict[str, object] = {
        "job_id": uuid4(),
        "workflow": "energy_plan",
        "workflow_version": "1",
        "workflow_hash": "abc",
        "status": status,
        "priority": 5,
        "reference": None,
        "params": {},
        "current_step": "report",
        "outputs": {"prepare": {"p": 1}, "report": {"summary": "ok"}},
        "error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "finished_at": NOW,
    }
    data.update(fields)
    return JobView.model_validate(data)


def test_a_result_rebuilt_from_a_view_carries_the_last_output() -> None:
    result = finished_from_view(view(JobStatus.SUCCEEDED))
    assert result.status is JobStatus.SUCCEEDED
    assert result.output == {"summary": "ok"}
    error = ErrorInfo(kind="DemoFailure", message="boom", step="report")
    failed = finished_from_view(view(JobStatus.FAILED, error=error))
    assert failed.output is None
    assert failed.error == error
