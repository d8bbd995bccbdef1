"""The reader query behind queue positions and ETAs (:mod:`segue.store.queueing`),
on a real PostgreSQL database: which tasks count as ahead, which workers as busy,
and which run times the ETA goes by."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from test_store_repository import NOW, OTHER_HASH, OTHER_WORKFLOW, insert, make_attempt, make_job

from segue.engine.state import Job
from segue.protocol.messages import AttemptStatus, JobStatus
from segue.store.repository import Store
from segue.workflows.model import Workflow

ELSEWHERE = Workflow.model_validate({"name": "u", "steps": [{"name": "a", "queue": "b"}]})
"""A step ``a`` too, but on queue ``b``: its tasks are not in queue ``a``."""
ELSEWHERE_HASH = "sha256:u-1"


def at(seconds: float) -> Any:
    return NOW + timedelta(seconds=seconds)


async def add(store: Store, *attempts: dict[str, Any], **job: Any) -> Job:
    """Store a job (of workflow ``w``, step ``a`` on queue ``a``, unless told) with
    attempts of the given fields, numbered from 1."""
    stored = make_job(**job)
    made = tuple(
        make_attempt(stored.job_id, ordinal, **fields)
        for ordinal, fields in enumerate(attempts, start=1)
    )
    return await insert(store, dataclasses.replace(stored, attempts=made))


def queued(seconds: float) -> dict[str, Any]:
    return {"status": AttemptStatus.DISPATCHED, "dispatched_at": at(seconds)}


def running(worker: str, seen: float) -> dict[str, Any]:
    return {
        "status": AttemptStatus.RUNNING,
        "dispatched_at": at(-900),
        "started_at": at(-800),
        "last_seen_at": at(seen),
        "worker_id": worker,
    }


def succeeded(took: float, finished: float = -1000) -> dict[str, Any]:
    return {
        "status": AttemptStatus.SUCCEEDED,
        "started_at": at(finished - took),
        "finished_at": at(finished),
    }


@pytest.fixture
async def busy_queue(store: Store) -> UUID:
    """Queue ``a`` with tasks before and after the job it returns (priority 5,
    dispatched at NOW), two busy slots on one worker, and finished runs of 10-30 s."""
    other = {"workflow": OTHER_WORKFLOW, "workflow_hash": OTHER_HASH}
    elsewhere = {"workflow": ELSEWHERE, "workflow_hash": ELSEWHERE_HASH}
    job = await add(store, queued(0))
    await add(store, queued(10), priority=7)  # later, but more urgent: ahead
    await add(store, queued(-10))  # earlier: ahead
    await add(store, queued(-20), **other)  # another workflow's step on queue a: ahead
    await add(store, queued(5))  # later: behind
    await add(store, queued(-30), priority=3)  # less urgent: behind
    await add(store, queued(-40), **elsewhere)  # queue b: not counted
    await add(store, running("w1", seen=-5), status=JobStatus.RUNNING)
    await add(store, running("w1", seen=-1), status=JobStatus.RUNNING, **other)
    await add(store, running("w2", seen=-600), status=JobStatus.RUNNING)  # silent: not busy
    await add(store, running("w3", seen=-1), status=JobStatus.RUNNING, **elsewhere)
    for took in (10, 20, 30):
        await add(store, succeeded(took), status=JobStatus.SUCCEEDED)
    await add(store, succeeded(25), queued(-50), status=JobStatus.RUNNING)  # a retry: ahead
    await add(store, succeeded(1000), status=JobStatus.SUCCEEDED, **other)  # another workflow
    return job.job_id


async def test_a_waiting_task_is_placed_by_priority_then_age_among_its_queue(
    store: Store, busy_queue: UUID
) -> None:
    estimate = await store.queue_estimate(busy_queue, NOW)

    assert estimate is not None
    assert (estimate.step, estimate.queue) == ("a", "a")
    assert estimate.position == 5, "a more urgent task, three older ones of queue a"
    assert estimate.waiting == 7
    assert (estimate.busy, estimate.workers) == (2, 1), "slots heard from within heartbeat_s"
    assert estimate.step_duration_s == 22.5, "median of this workflow's runs of step a"
    assert estimate.samples == 4
    assert estimate.eta_s == pytest.approx((4 + 0.5) * 22.5 / 2 + 22.5)


async def test_a_retry_in_backoff_is_placed_as_if_queued_when_due(
    store: Store, busy_queue: UUID
) -> None:
    retry = {"status": AttemptStatus.SCHEDULED, "due_at": at(60)}
    job = await add(store, {"status": AttemptStatus.FAILED, "finished_at": at(-1)}, retry)

    estimate = await store.queue_estimate(job.job_id, NOW)

    assert estimate is not None
    assert estimate.position == 7, "every task queued now goes first but the less urgent one"
    assert estimate.due_in_s == 60.0
    assert estimate.eta_s == pytest.approx(max(60.0, (6 + 0.5) * 22.5 / 2) + 22.5)


async def test_the_items_of_a_map_step_are_placed_first_to_last(
    store: Store, busy_queue: UUID
) -> None:
    items = [{**queued(-15), "item_index": index} for index in range(3)]
    job = await add(store, *items)

    estimate = await store.queue_estimate(job.job_id, NOW)

    assert estimate is not None
    assert (estimate.position, estimate.tasks, estimate.waiting) == (4, 3, 10)
    assert estimate.eta_s == pytest.approx((5 + 0.5) * 22.5 / 2 + 22.5), "for its last item"


async def test_no_estimate_for_a_job_without_a_waiting_step(store: Store) -> None:
    started = await add(store, running("w1", seen=0), status=JobStatus.RUNNING)
    done = await add(store, succeeded(5), status=JobStatus.SUCCEEDED)

    assert await store.queue_estimate(started.job_id, NOW) is None
    assert await store.queue_estimate(done.job_id, NOW) is None
    assert await store.queue_estimate(uuid4(), NOW) is None


async def test_a_lone_task_has_a_position_but_no_eta_without_history(store: Store) -> None:
    job = await add(store, queued(0))

    estimate = await store.queue_estimate(job.job_id, NOW)

    assert estimate is not None
    assert (estimate.position, estimate.waiting, estimate.busy) == (1, 1, 0)
    assert (estimate.step_duration_s, estimate.eta_s) == (None, None)


async def test_a_worker_between_two_tasks_counts_as_a_worker_of_the_queue(store: Store) -> None:
    job = await add(store, queued(0))
    just_done = {**succeeded(4, finished=-2), "worker_id": "w9"}
    await add(store, just_done, status=JobStatus.SUCCEEDED, updated_at=at(-2))
    long_ago = {**succeeded(4, finished=-500), "worker_id": "w8"}
    await add(store, long_ago, status=JobStatus.SUCCEEDED, updated_at=at(-500))

    estimate = await store.queue_estimate(job.job_id, NOW)

    assert estimate is not None
    assert (estimate.busy, estimate.workers) == (0, 1), "w9 finished one within heartbeat_s"
    assert estimate.eta_s == pytest.approx(0.5 * 4 + 4)
