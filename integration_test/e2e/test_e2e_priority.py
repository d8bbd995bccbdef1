"""Job priority end to end: a high-priority job overtakes a backlog of normal ones
on a busy worker, and a waiting job can be told where it stands in its queue.

One real SDK worker with concurrency 1 serves ``quick_check`` (0.2 s a step)
while 30 normal jobs (priority 5) queue up; a job of priority 9 submitted after
all of them must finish before most of them. The worker holds at most one task
besides the one it runs (its prefetch), so the urgent job waits for at most two
normal ones. Nothing is asserted on time, only on order; the figures are
printed (``pytest -s``) and recorded in ``docs/operator.md`` ("Priorities").
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from segue.client import JobHandle, SegueClient
from segue.protocol.messages import JobStatus, JobView, QueueEstimate
from segue.settings import Settings
from segue.worker import Worker

BACKLOG = 30
STEP = {"step_seconds": 0.2}
NORMAL, URGENT = 5, 9
MUST_OVERTAKE = 20
"""Normal jobs submitted before it that the urgent job must finish ahead of (of 30:
one or two ran before it arrived, at most two more were held by the worker)."""


async def test_a_high_priority_job_overtakes_a_backlog_on_a_busy_worker(
    service: Settings, client: SegueClient, make_worker: Callable[[int], Worker]
) -> None:
    backlog = [await client.submit("quick_check", STEP, priority=NORMAL) for _ in range(BACKLOG)]
    await asyncio.gather(*(job.accepted() for job in backlog))
    worker = make_worker(1)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(first_done(backlog), 60)  # the worker is busy on the backlog
        urgent = await client.submit("quick_check", STEP, priority=URGENT)
        await asyncio.wait_for(urgent.result(), 60)
        place = await client.get(backlog[-1].job_id, include_history=False, include_queue=True)
        finished = await asyncio.wait_for(finish_times([*backlog, urgent]), 90)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 40)

    overtaken = sum(finished[job.job_id] > finished[urgent.job_id] for job in backlog)
    views = {job.job_id: await client.get(job.job_id) for job in [*backlog, urgent]}
    backlog_waits = [wait_s(views[job.job_id]) for job in backlog]
    print(
        f"\npriorities: the urgent job overtook {overtaken} of {BACKLOG} normal jobs; "
        f"waited {wait_s(views[urgent.job_id]):.2f} s, the backlog "
        f"{statistics.median(backlog_waits):.2f} s (median), {max(backlog_waits):.2f} s (max)"
    )
    assert overtaken >= MUST_OVERTAKE
    check_place(place, backlog[-1], finished)


async def first_done(jobs: list[JobHandle]) -> None:
    """Wait until one of the jobs has finished (whichever the worker took first)."""
    waiting = [asyncio.ensure_future(job.result()) for job in jobs]
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


async def finish_times(jobs: list[JobHandle]) -> dict[UUID, datetime]:
    """When each job finished (every one must succeed)."""
    results = await asyncio.gather(*(job.result() for job in jobs))
    assert all(result.status is JobStatus.SUCCEEDED for result in results), results
    return {result.job_id: result.at for result in results}


def wait_s(view: JobView | None) -> float:
    """Seconds from the job's submission to the start of its step."""
    assert view is not None
    started = view.attempts[0].started_at
    assert started is not None
    return (started - view.created_at).total_seconds()


def check_place(view: JobView | None, job: JobHandle, finished: dict[UUID, datetime]) -> None:
    """The last normal job, asked about once the urgent one was done: far back in its
    queue, on the one worker, with an ETA from the runs so far (unless the worker
    was between two tasks just then)."""
    assert view is not None
    place = view.queue
    assert isinstance(place, QueueEstimate), "a waiting job gets an estimate"
    assert place.queue == "quick_check"
    # Tasks dispatched in one batch share their dispatch time, so their order among
    # themselves is not known: the position is only bounded here.
    assert MUST_OVERTAKE <= place.waiting <= BACKLOG
    assert 1 <= place.position <= place.waiting
    assert place.samples >= 1, "the urgent job's run at least"
    assert place.workers <= 1
    assert (place.eta_s is not None) == (place.busy == 1)
    took = (finished[job.job_id] - place.at).total_seconds()
    print(
        f"queue estimate of the last normal job: position {place.position} of "
        f"{place.waiting}, eta {place.eta_s} s (run time {place.step_duration_s} s of "
        f"{place.samples}); it was done {took:.2f} s later"
    )
