"""A failed job is retried from the failed step as a new run of the same job."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from segue.client import RequestFailedError, SegueClient
from segue.protocol.messages import AttemptStatus, JobStatus
from segue.protocol.names import Names
from segue.settings import Settings
from segue.worker import StepContext, StepHandler, Worker, step_handler


class FlakyOptimiser:
    """Handlers for ``energy_plan`` whose ``optimise`` fails the first time only."""

    def __init__(self) -> None:
        self.optimise_calls = 0

    def handlers(self) -> list[StepHandler]:
        """One handler per queue of ``energy_plan``."""

        async def prepare(ctx: StepContext) -> dict[str, object]:
            return {"rows": 3}

        async def optimise(ctx: StepContext) -> dict[str, object]:
            self.optimise_calls += 1
            if self.optimise_calls == 1:
                raise RuntimeError("solver licence server unreachable")
            return {"cost_eur": 42.0, "saw_inputs": sorted(ctx.inputs)}

        async def passthrough(ctx: StepContext) -> dict[str, object]:
            return {"done": ctx.step}

        return [
            step_handler("prepare", prepare),
            step_handler("optimise", optimise),
            step_handler("simulate", passthrough),
            step_handler("report", passthrough),
        ]


@pytest.fixture
async def flaky_worker(
    amqp_url: str, names: Names, service: Settings
) -> AsyncIterator[FlakyOptimiser]:
    """A worker fleet whose optimiser fails once."""
    flaky = FlakyOptimiser()
    worker = Worker(handlers=flaky.handlers(), amqp_url=amqp_url, namespace=names.namespace)
    task = asyncio.create_task(worker.run())
    yield flaky
    worker.stop()
    await asyncio.wait_for(task, 40)


async def test_retry_reruns_a_failed_job_from_the_failed_step(
    flaky_worker: FlakyOptimiser, client: SegueClient
) -> None:
    job = await client.submit("energy_plan", {})
    first = await job.result()
    assert first.status is JobStatus.FAILED
    assert first.error is not None
    assert first.error.step == "optimise"

    view = await client.retry(job.job_id, reason="licence server is back")
    second_run = await client.follow(job.job_id)
    assert view.run == 2
    assert view.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED)
    result = await second_run.result()
    assert result.status is JobStatus.SUCCEEDED, result.error

    final = await client.get(job.job_id)
    assert final is not None
    assert final.run == 2
    assert final.outputs["optimise"]["saw_inputs"] == ["prepare"]
    runs = Counter((a.run, a.step, a.status) for a in final.attempts)
    assert runs == {
        (1, "prepare", AttemptStatus.SUCCEEDED): 1,
        (1, "optimise", AttemptStatus.FAILED): 1,
        (2, "optimise", AttemptStatus.SUCCEEDED): 1,
        (2, "simulate", AttemptStatus.SUCCEEDED): 1,
        (2, "report", AttemptStatus.SUCCEEDED): 1,
    }, "prepare is not run again: its output is kept"
    history = [entry.type for entry in final.history]
    assert history.count("job_failed") == 1
    assert history.count("job_rerun") == 1
    assert history.count("job_succeeded") == 1
    assert history.index("job_failed") < history.index("job_rerun") < history.index("job_succeeded")


async def test_retry_of_a_succeeded_job_is_refused_with_the_reason(
    flaky_worker: FlakyOptimiser, client: SegueClient
) -> None:
    flaky_worker.optimise_calls = 1  # no failure this time
    job = await client.submit("energy_plan", {"simulate": False})
    assert (await job.result()).status is JobStatus.SUCCEEDED
    with pytest.raises(RequestFailedError, match="only failed or timed-out jobs can be rerun"):
        await client.retry(job.job_id)


async def test_retry_of_an_unknown_job_is_refused(service: Settings, client: SegueClient) -> None:
    with pytest.raises(RequestFailedError, match="unknown_job"):
        await client.retry(uuid4())
