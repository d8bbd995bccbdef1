"""The orchestrator is SIGKILLed in the middle of a run and restarted: every job
still finishes, exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable

from segue.client import SegueClient
from segue.protocol.messages import AttemptStatus, JobStatus
from segue.protocol.names import Names
from segue.settings import Settings
from segue.store.repository import Store
from segue.worker import Worker

JOBS = 30


async def start_orchestrator(settings: Settings) -> asyncio.subprocess.Process:
    """``segue serve`` as a separate process, as in production."""
    env = {
        **os.environ,
        "SEGUE_AMQP_URL": settings.amqp_url,
        "SEGUE_DATABASE_URL": settings.database_url,
        "SEGUE_NAMESPACE": settings.namespace,
        "SEGUE_WORKFLOW_CONFIG": str(settings.workflow_config),
        "SEGUE_SWEEP_INTERVAL_S": "0.2",
        "SEGUE_RELAY_INTERVAL_S": "0.5",
        "SEGUE_RELAY_GRACE_S": "1",
        "SEGUE_LOG_LEVEL": "warning",
        "SEGUE_HTTP_PORT": str(settings.http_port),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "segue", "serve", env=env, stdout=asyncio.subprocess.DEVNULL
    )


async def test_orchestrator_killed_mid_run_still_finishes_every_job_once(
    settings: Settings, names: Names, store: Store, make_worker: Callable[[int], Worker]
) -> None:
    amqp_url = settings.amqp_url
    orchestrator = await start_orchestrator(settings)
    demo_worker = make_worker(8)
    worker_task = asyncio.create_task(demo_worker.run())
    try:
        async with SegueClient(amqp_url, namespace=names.namespace) as client:
            jobs = [
                await client.submit("energy_plan", {"step_seconds": 0.3, "horizon_years": i + 1})
                for i in range(JOBS)
            ]
            await asyncio.sleep(2.0)
            orchestrator.send_signal(signal.SIGKILL)
            await orchestrator.wait()
            await asyncio.sleep(1.0)
            orchestrator = await start_orchestrator(settings)
            results = await asyncio.wait_for(
                asyncio.gather(*(job.result() for job in jobs)), timeout=90
            )
            assert [r.status for r in results] == [JobStatus.SUCCEEDED] * JOBS
            for job in jobs:
                view = await client.get(job.job_id)
                assert view is not None
                types = Counter(entry.type for entry in view.history)
                assert types["job_submitted"] == 1
                assert types["job_succeeded"] == 1
                succeeded = Counter(
                    a.step for a in view.attempts if a.status is AttemptStatus.SUCCEEDED
                )
                assert succeeded == {"prepare": 1, "optimise": 1, "simulate": 1, "report": 1}
                assert types["step_succeeded"] == 4, "no result was applied twice"
        for _ in range(50):
            if await store.outbox_size() == 0:
                break
            await asyncio.sleep(0.2)
        assert await store.outbox_size() == 0
    finally:
        demo_worker.stop()
        await asyncio.wait_for(worker_task, 40)
        if orchestrator.returncode is None:
            orchestrator.terminate()
            await orchestrator.wait()
