"""A replica frozen while it holds worker events does not make another replica
declare those workers lost (two real orchestrator processes, a real SDK worker,
real RabbitMQ + PostgreSQL).

Replicas hold each other's deadlines back to the earliest horizon any of them
published (:mod:`segue.service.lag`). A replica frozen for longer than its row
counts as fresh (an overloaded host, a long GC pause, SIGSTOP) still holds the
events the broker delivered to it: their workers sent their results and stopped
heartbeating. The other replica must not take the frozen one's silence for
"nothing held": it waits until the frozen replica's consumer is gone from the
queue and the queue was seen drained, or until the frozen one speaks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from faults.processes import ProcessGroup, orchestrator_env, segue_argv
from segue.client import SegueClient
from segue.protocol.messages import AttemptStatus, JobStatus
from segue.protocol.names import Names
from segue.settings import Settings
from segue.store.repository import HORIZON_FRESH_S
from segue.worker import Worker

from .conftest import running_service
from .test_e2e_hardening import HOLD, Runs, hold_queue_cleanup, wait_for_status

__all__ = ["hold_queue_cleanup"]

JOBS = 8
STEP_S = 3.0
FROZEN_S = HORIZON_FRESH_S + 6.0
"""Longer than a replica's row counts as fresh, plus a heartbeat window and more."""


@contextlib.asynccontextmanager
async def frozen_replica_group(
    settings: Settings, workflows: Path, logs: Path
) -> AsyncIterator[ProcessGroup]:
    """One more orchestrator, as a process of its own that the test can freeze."""
    env = orchestrator_env(
        settings.amqp_url,
        settings.database_url,
        Names(settings.namespace),
        workflows,
        SEGUE_LOG_LEVEL="warning",
    )
    group = ProcessGroup("orchestrator", segue_argv("serve"), env, 1, logs)
    await group.start()
    try:
        yield group
    finally:
        await group.stop()


async def wait_for_consumers(connection: AbstractRobustConnection, queue: str, count: int) -> None:
    """Return once ``count`` consumers consume ``queue`` (both replicas are ready)."""
    channel = await connection.channel()
    underlay = await channel.get_underlay_channel()  # aio-pika would answer from a cache
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        consumers = (await underlay.queue_declare(queue, passive=True)).consumer_count
        if consumers is not None and consumers >= count:
            await channel.close()
            return
        assert loop.time() < deadline, f"{consumers} consumers of {queue}, not {count}"
        await asyncio.sleep(0.1)


async def test_a_frozen_replica_holding_results_makes_no_live_worker_look_lost(
    settings: Settings, names: Names, tmp_path: Path, hold_queue_cleanup: None
) -> None:
    workflows = tmp_path / "hold.json"
    workflows.write_text(json.dumps(HOLD), encoding="utf-8")
    hold_settings = settings.model_copy(update={"workflow_config": workflows})
    runs = Runs()
    worker = Worker(
        handlers=[runs.handler("w1")],  # type: ignore[list-item]
        amqp_url=settings.amqp_url,
        namespace=names.namespace,
        concurrency=JOBS,
        worker_id="w1",
    )
    connection = await aio_pika.connect_robust(settings.amqp_url)
    async with (
        connection,
        running_service(hold_settings),
        frozen_replica_group(hold_settings, workflows, tmp_path / "logs") as frozen,
        SegueClient(settings.amqp_url, namespace=names.namespace) as client,
    ):
        await wait_for_consumers(connection, names.events_queue, 2)
        worker_task = asyncio.create_task(worker.run())
        try:
            jobs = [await client.submit("hold", {"seconds": STEP_S}) for _ in range(JOBS)]
            for job in jobs:
                await wait_for_status(client, job.job_id, {JobStatus.RUNNING})
            # The results come while the second replica is frozen: the broker
            # hands it about half of them, which it holds and cannot handle.
            await frozen.pause([0], FROZEN_S)
            results = [await job.result(timeout=60) for job in jobs]
            views = [await client.get(job.job_id) for job in jobs]
        finally:
            worker.stop(now=True)
            await asyncio.wait_for(worker_task, 40)

    lost: dict[UUID, list[str]] = {}
    for job, result, view in zip(jobs, results, views, strict=True):
        assert result.status is JobStatus.SUCCEEDED, result
        assert view is not None
        events = [event.type for event in view.history]
        statuses = [attempt.status for attempt in view.attempts]
        if "step_lost" in events or statuses != [AttemptStatus.SUCCEEDED]:
            lost[job.job_id] = events
    assert not lost, f"live attempts declared lost while a replica was frozen: {lost}"
    assert sorted(len(runs.started[job.job_id]) for job in jobs) == [1] * JOBS
