"""OMOTES Celery workers that die: the job is retried, then fails with a diagnosis;
a long task of a live worker is kept alive by the bridge's heartbeats.

Celery workers send no heartbeats. A worker process that dies mid-task has its
task redelivered (the SDK's acks late and reject on worker lost): each START
after the first is a crash to Segue. A worker that is gone altogether answers
no ``inspect active``: its task gets no heartbeat, Segue declares it lost.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from segue.client import SegueClient
from segue.protocol.messages import AttemptStatus, JobStatus, JobView

from .conftest import BridgeService, CeleryNames, CeleryWorkers
from .test_omotes_worker import (
    ESDL,
    RESULT_TIMEOUT_S,
    legacy_workflows,
    running_attempt,
    save_inputs,
    wait_for_job,
)

HEARTBEAT_S = 4.5
"""The sleep step's ``heartbeat_s``: the bridge must beat well within it."""


def sleep_workflow(celery: CeleryNames) -> dict[str, Any]:
    """A format-1 file: one workflow whose step is the test worker's sleep task type."""
    return {
        "format_version": 1,
        "workflows": [
            {
                "name": "long_sleep",
                "parameters": [{"name": "seconds", "type": "float", "required": True}],
                "steps": [
                    {
                        "name": "sleep",
                        "queue": celery.task_type("sleep"),
                        "heartbeat_s": HEARTBEAT_S,
                    }
                ],
            }
        ],
    }


def history_types(view: JobView) -> list[str]:
    return [entry.type for entry in view.history]


async def test_a_worker_process_crashing_mid_task_fails_the_job_after_max_crashes(
    bridge_service: BridgeService, omotes_worker: CeleryWorkers, celery_names: CeleryNames
) -> None:
    workflow = celery_names.task_type("crash")
    async with (
        bridge_service(legacy_workflows(celery_names)) as running,
        omotes_worker() as worker,
        SegueClient(running.settings.amqp_url, namespace=running.names.namespace) as client,
    ):
        handle = await client.submit(workflow)
        result = await handle.result(timeout=RESULT_TIMEOUT_S)
        view = await client.get(handle.job_id)
        # The job's failure revoked the task: the worker stops running it again.
        await asyncio.sleep(3.0)
        starts = worker.log_text().count(f"Worker started new task {handle.job_id}")
        await asyncio.sleep(3.0)
        log = worker.log_text()

    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error.kind == "worker_lost"
    assert "worker lost 3 times" in result.error.message
    assert "WorkerLostError" in log  # Celery's pool lost the process running the task
    assert view is not None
    redeliveries = [entry.data for entry in view.history if entry.type == "step_redelivered"]
    assert [entry["crashes"] for entry in redeliveries] == [1, 2, 3]
    [attempt] = view.attempts  # a redelivered task is the same attempt, run again
    assert attempt.status is AttemptStatus.LOST
    assert starts >= 4
    assert log.count(f"Worker started new task {handle.job_id}") == starts


async def test_heartbeats_keep_a_long_task_of_a_live_worker_running(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    celery_names: CeleryNames,
    database_url: str,
) -> None:
    job_id = uuid4()
    await save_inputs(database_url, job_id, ESDL, None)
    task_types = celery_names.task_type("sleep")
    async with (
        bridge_service(sleep_workflow(celery_names), omotes_task_types=task_types) as running,
        omotes_worker(),
        SegueClient(running.settings.amqp_url, namespace=running.names.namespace) as client,
    ):
        handle = await client.submit("long_sleep", {"seconds": 3 * HEARTBEAT_S}, job_id=job_id)
        result = await handle.result(timeout=RESULT_TIMEOUT_S)
        view = await client.get(job_id)

    assert result.status is JobStatus.SUCCEEDED, result.error
    assert view is not None
    assert [a.status for a in view.attempts] == [AttemptStatus.SUCCEEDED]
    assert "step_lost" not in history_types(view)


async def test_a_killed_worker_loses_its_task_which_runs_again_on_another(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    celery_names: CeleryNames,
    database_url: str,
) -> None:
    job_id = uuid4()
    await save_inputs(database_url, job_id, ESDL, None)
    task_types = celery_names.task_type("sleep")
    async with (
        bridge_service(sleep_workflow(celery_names), omotes_task_types=task_types) as running,
        SegueClient(running.settings.amqp_url, namespace=running.names.namespace) as client,
    ):
        async with omotes_worker() as first:
            handle = await client.submit("long_sleep", {"seconds": 8.0}, job_id=job_id)
            started = await wait_for_job(client, job_id, running_attempt)
            lost_attempt = started.attempts[-1].attempt_id
            await first.kill()  # the worker and its pool, at once: nobody runs the task
        await wait_for_job(client, job_id, lambda v: "step_lost" in history_types(v))
        async with omotes_worker() as second:
            result = await handle.result(timeout=RESULT_TIMEOUT_S)
            # The lost attempt's task came back to the queue when the first worker
            # died; the second worker starts it, and the bridge has it terminated.
            await second.wait_for_log(f"Terminating {lost_attempt} (15)", timeout_s=30)
        view = await client.get(job_id)

    assert result.status is JobStatus.SUCCEEDED, result.error
    assert view is not None
    assert [a.status for a in view.attempts] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    [lost] = [entry.data for entry in view.history if entry.type == "step_lost"]
    assert lost["crashes"] == 1
    assert "heartbeat timeout" in lost["reason"]
