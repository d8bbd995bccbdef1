"""End to end through the real client SDK, orchestrator and SDK workers."""

from __future__ import annotations

import asyncio
import os
import sys
from uuid import uuid4

import aio_pika
import pytest

from segue.broker.boundary import REASON_HEADER
from segue.client import JobRejectedError, SegueClient
from segue.protocol.messages import (
    AttemptStatus,
    JobFinished,
    JobProgressed,
    JobStatus,
    JobStatusChanged,
)
from segue.protocol.names import Names
from segue.settings import Settings
from segue.worker import Worker

FAST = {"step_seconds": 0.2}


async def test_three_step_job_runs_to_a_result_with_progress(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    job = await client.submit("energy_plan", {**FAST, "horizon_years": 20, "region": "de"})
    updates = [update async for update in job.updates()]

    result = updates[-1]
    assert isinstance(result, JobFinished)
    assert result.status is JobStatus.SUCCEEDED, result.error
    progressed_steps = {u.step for u in updates if isinstance(u, JobProgressed)}
    assert progressed_steps == {"prepare", "optimise", "simulate", "report"}
    statuses = [u.status for u in updates if isinstance(u, JobStatusChanged)]
    assert statuses[0] is JobStatus.QUEUED
    assert JobStatus.RUNNING in statuses

    view = await client.get(job.job_id)
    assert view is not None
    assert view.status is JobStatus.SUCCEEDED
    assert view.params["region"] == "de"
    assert view.params["simulate"] is True, "defaults are applied and stored with the job"
    assert set(view.outputs) == {"prepare", "optimise", "simulate", "report"}
    assert [a.step for a in view.attempts] == ["prepare", "optimise", "simulate", "report"]
    assert all(a.status is AttemptStatus.SUCCEEDED for a in view.attempts)
    history = [entry.type for entry in view.history]
    assert history[0] == "job_submitted"
    assert history[-1] == "job_succeeded"
    assert [entry.seq for entry in view.history] == list(range(1, len(view.history) + 1))


async def test_branch_skips_simulation_when_parameter_says_so(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    job = await client.submit("energy_plan", {**FAST, "simulate": False})
    result = await job.result()
    assert result.status is JobStatus.SUCCEEDED
    view = await client.get(job.job_id)
    assert view is not None
    assert [a.step for a in view.attempts] == ["prepare", "optimise", "report"]


async def test_invalid_parameters_are_rejected_and_nothing_is_dispatched(
    service: Settings, client: SegueClient, names: Names, amqp_url: str
) -> None:
    job = await client.submit("energy_plan", {"horizon_years": 500, "colour": "red"})
    with pytest.raises(JobRejectedError) as rejected:
        await job.accepted()
    reason = str(rejected.value)
    assert "horizon_years" in reason
    assert "maximum" in reason
    assert "colour" in reason
    assert await client.get(job.job_id) is None

    dead = await _dead_letters(amqp_url, names, expected=1)
    assert "horizon_years" in dead[0].headers[REASON_HEADER]  # type: ignore[operator]
    assert await _task_queue_depths(amqp_url, names) == 0


async def test_unknown_workflow_is_rejected(
    service: Settings, client: SegueClient, names: Names, amqp_url: str
) -> None:
    job = await client.submit("no_such_workflow", {})
    with pytest.raises(JobRejectedError, match="unknown workflow 'no_such_workflow'"):
        await job.accepted()
    assert len(await _dead_letters(amqp_url, names, expected=1)) == 1


async def test_submitting_the_same_job_twice_yields_one_job_and_one_result(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    job_id = uuid4()
    first = await client.submit("quick_check", {"value": 7}, job_id=job_id)
    second = await client.submit("quick_check", {"value": 7}, job_id=job_id)
    assert first.job_id == second.job_id == job_id
    result = await first.result()
    assert result.status is JobStatus.SUCCEEDED

    view = await client.get(job_id)
    assert view is not None
    types = [entry.type for entry in view.history]
    assert types.count("job_submitted") == 1
    assert types.count("submission_ignored") == 1
    assert types.count("job_succeeded") == 1
    assert len(view.attempts) == 1


async def test_failing_step_fails_the_job_with_the_error_shown_by_the_cli(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    job = await client.submit("energy_plan", {**FAST, "fail_at": "optimise"})
    result = await job.result()
    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error.step == "optimise"
    assert result.error.kind == "DemoFailure"

    out = await _cli(service, "jobs", "show", str(job.job_id))
    assert "failed" in out
    assert "DemoFailure" in out
    assert "optimise" in out
    view = await client.get(job.job_id)
    assert view is not None
    assert "report" not in {a.step for a in view.attempts}, "no step runs after the failure"


async def test_cancel_during_a_running_step_ends_the_job_cancelled(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    job = await client.submit("energy_plan", {"step_seconds": 30})
    async for update in job.updates():
        if isinstance(update, JobProgressed) and update.step == "prepare":
            break
    await client.cancel(job.job_id, reason="user changed their mind")
    result = await job.result()
    assert result.status is JobStatus.CANCELLED
    view = await client.get(job.job_id)
    assert view is not None
    assert view.status is JobStatus.CANCELLED
    assert view.attempts[-1].status is AttemptStatus.CANCELLED
    assert "job_cancelled" in [entry.type for entry in view.history]


async def _cli(settings: Settings, *args: str) -> str:
    env = {
        **os.environ,
        "SEGUE_AMQP_URL": settings.amqp_url,
        "SEGUE_NAMESPACE": settings.namespace,
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "segue",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, text
    return text


async def _dead_letters(
    amqp_url: str, names: Names, expected: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(names.dead_queue)
        messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        for _ in range(100):
            message = await queue.get(fail=False, no_ack=True)
            if message is not None:
                messages.append(message)
            elif len(messages) >= expected:
                break
            else:
                await asyncio.sleep(0.1)
        return messages


async def _task_queue_depths(amqp_url: str, names: Names) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        total = 0
        for step_queue in ("prepare", "optimise", "simulate", "report", "quick_check"):
            queue = await channel.declare_queue(names.task_queue(step_queue), passive=True)
            total += queue.declaration_result.message_count or 0
        return total
