"""Workers that die, poison jobs, and steps that outlive RabbitMQ's consumer timeout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from segue.client import SegueClient
from segue.protocol.messages import AttemptStatus, JobStatus, JobView
from segue.settings import Settings
from segue.worker import Worker

from .conftest import DEMO_CONFIG, running_service

HEARTBEAT_S = 2


def quick_check_config(tmp_path: Path, max_crashes: int) -> Path:
    """The demo's ``quick_check`` with a short heartbeat timeout and a ``crash_at`` param."""
    demo = json.loads(DEMO_CONFIG.read_text())
    workflow = next(w for w in demo["workflows"] if w["name"] == "quick_check")
    workflow["steps"][0].update(heartbeat_s=HEARTBEAT_S, max_crashes=max_crashes)
    crash = {
        "name": "crash_at",
        "type": "string",
        "default": "none",
        "enum": [{"value": "none"}, {"value": "quick_check"}],
    }
    workflow["parameters"].append(crash)
    path = tmp_path / "workflow_config.json"
    path.write_text(json.dumps({"format_version": 1, "workflows": [workflow]}))
    return path


class WorkerProcesses:
    """Demo workers as separate processes, so a test can SIGKILL one."""

    def __init__(self, settings: Settings) -> None:
        self._env = {
            **os.environ,
            "SEGUE_AMQP_URL": settings.amqp_url,
            "SEGUE_NAMESPACE": settings.namespace,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        """Start ``count`` more worker processes."""
        for _ in range(count):
            command = [sys.executable, "-m", "segue", "worker", "run", "segue.demo:worker"]
            process = subprocess.Popen(command, env=self._env, stdout=subprocess.DEVNULL)
            self.processes.append(process)

    def kill(self, pid: int) -> None:
        """SIGKILL the worker with this process id."""
        os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Terminate every worker still running, and reap them all."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[WorkerProcesses]:
    """A pool of worker processes, stopped after the test."""
    pool = WorkerProcesses(settings)
    try:
        yield pool
    finally:
        await asyncio.to_thread(pool.stop_all)


async def wait_for(
    client: SegueClient, job_id: Any, check: Callable[[JobView], bool], within_s: float
) -> JobView:
    """Poll the job until ``check`` holds."""
    for _ in range(int(within_s / 0.2)):
        view = await client.get(job_id)
        if view is not None and check(view):
            return view
        await asyncio.sleep(0.2)
    pytest.fail(f"job {job_id} did not reach the expected state within {within_s} s: {view}")


async def test_a_worker_killed_mid_step_is_detected_and_the_step_runs_again(
    settings: Settings, tmp_path: Path, workers: WorkerProcesses, client: SegueClient
) -> None:
    config = quick_check_config(tmp_path, max_crashes=3)
    async with running_service(settings.model_copy(update={"workflow_config": config})):
        workers.start(2)
        job = await client.submit("quick_check", {"step_seconds": 6})
        running = await wait_for(
            client,
            job.job_id,
            lambda v: bool(v.attempts) and v.attempts[0].status is AttemptStatus.RUNNING,
            within_s=30,
        )
        worker_id = running.attempts[0].worker_id
        assert worker_id is not None
        workers.kill(int(worker_id.rsplit(":", 1)[1]))

        result = await job.result(timeout=60)
        assert result.status is JobStatus.SUCCEEDED, result.error
        view = await client.get(job.job_id)
        assert view is not None
        assert [a.status for a in view.attempts] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
        assert view.attempts[1].worker_id != worker_id
        lost = next(e for e in view.history if e.type == "step_lost")
        assert f"heartbeat timeout after {HEARTBEAT_S}s" in json.dumps(lost.data)


async def test_a_poison_job_is_failed_after_max_crashes_with_a_diagnosis(
    settings: Settings, tmp_path: Path, workers: WorkerProcesses, client: SegueClient
) -> None:
    config = quick_check_config(tmp_path, max_crashes=2)
    async with running_service(settings.model_copy(update={"workflow_config": config})):
        workers.start(2)
        job = await client.submit("quick_check", {"step_seconds": 1, "crash_at": "quick_check"})
        result = await job.result(timeout=60)
        assert result.status is JobStatus.FAILED
        assert result.error is not None
        assert result.error.kind == "worker_lost"
        assert "worker lost 2 times" in result.error.message
        assert "heartbeat timeout" in result.error.message
        view = await client.get(job.job_id)
        assert view is not None
        assert [a.status for a in view.attempts] == [AttemptStatus.LOST, AttemptStatus.LOST]
        exits = [p.wait(timeout=10) for p in workers.processes]
        assert exits == [137, 137], "each worker died on the poison job once, no more"


@pytest.fixture
def tiny_consumer_timeout() -> Iterator[None]:
    """RabbitMQ closes a channel holding an unacked delivery for over 2 s (checked each 1 s).

    Applies to channels opened while it is in force; restored afterwards.
    """

    def rabbit_env(expression: str) -> None:
        subprocess.run(["rabbitmqctl", "eval", expression], check=True, capture_output=True)

    rabbit_env("application:set_env(rabbit, consumer_timeout, 2000).")
    rabbit_env("application:set_env(rabbit, channel_tick_interval, 1000).")
    try:
        yield None
    finally:
        rabbit_env("application:set_env(rabbit, consumer_timeout, 1800000).")
        rabbit_env("application:set_env(rabbit, channel_tick_interval, 60000).")


async def hold_unacked(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """Receive a delivery and never acknowledge it."""


async def test_a_step_outlives_the_brokers_consumer_timeout(
    tiny_consumer_timeout: None,
    service: Settings,
    make_worker: Callable[[int], Worker],
    client: SegueClient,
    amqp_url: str,
) -> None:
    # A plain consumer that holds its delivery unacked loses its channel: the limit bites.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        probe = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=probe.name)
        await probe.consume(hold_unacked)

        worker = make_worker(1)
        running = asyncio.create_task(worker.run())
        try:
            job = await client.submit("quick_check", {"step_seconds": 8})
            result = await job.result(timeout=60)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 40)
        assert channel.is_closed, "the consumer timeout did not close the probe's channel"

    assert result.status is JobStatus.SUCCEEDED, result.error
    view = await client.get(job.job_id)
    assert view is not None
    assert len(view.attempts) == 1, "the task was never redelivered"
    assert "step_redelivered" not in [entry.type for entry in view.history]
