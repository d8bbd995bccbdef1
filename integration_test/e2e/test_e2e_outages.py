"""The orchestrator and the SDKs ride out a PostgreSQL and a RabbitMQ outage:
``/readyz`` reports the outage while it lasts, and no job is lost.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from segue.client import SegueClient
from segue.protocol.messages import JobStatus
from segue.settings import Settings
from segue.worker import Worker

PG_VERSION = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
POSTGRES = ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main"]


async def run(*command: str) -> None:
    """Run a service-control command; fail the test with its output if it fails.

    Starting a service that is already running counts as success.
    """
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, check=False
    )
    output = f"{done.stdout}{done.stderr}"
    assert done.returncode == 0 or "already running" in output, f"{' '.join(command)}: {output}"


def readyz(settings: Settings) -> tuple[int, dict[str, Any]]:
    """Status code and body of the orchestrator's ``/readyz``."""
    url = f"http://127.0.0.1:{settings.http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


async def wait_for_readiness(settings: Settings, ready: bool, within_s: float) -> dict[str, Any]:
    """Poll ``/readyz`` until it says ``ready`` (200) or not (503); returns the body."""
    expected = 200 if ready else 503
    body: dict[str, Any] = {}
    for _ in range(int(within_s / 0.25)):
        status, body = await asyncio.to_thread(readyz, settings)
        if status == expected:
            return body
        await asyncio.sleep(0.25)
    pytest.fail(f"/readyz did not answer {expected} within {within_s} s; last: {body}")


async def test_postgres_outage_is_reported_and_ridden_out(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    assert (await wait_for_readiness(service, ready=True, within_s=10))["status"] == "ready"
    job = await client.submit("energy_plan", {"step_seconds": 1.0})
    await job.accepted()
    await run(*POSTGRES, "stop", "-m", "fast")
    try:
        body = await wait_for_readiness(service, ready=False, within_s=15)
        assert "database" in body["problems"]
        await asyncio.sleep(2)  # worker events pile up while the database is away
    finally:
        await run(*POSTGRES, "start")
    await wait_for_readiness(service, ready=True, within_s=30)
    result = await job.result(timeout=90)
    assert result.status is JobStatus.SUCCEEDED, result.error
    after = await client.submit("quick_check", {"value": 3})
    assert (await after.result(timeout=60)).status is JobStatus.SUCCEEDED


async def test_rabbitmq_outage_is_reported_and_ridden_out(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    await wait_for_readiness(service, ready=True, within_s=10)
    job = await client.submit("energy_plan", {"step_seconds": 1.0})
    await job.accepted()
    await run("rabbitmqctl", "stop_app")
    try:
        body = await wait_for_readiness(service, ready=False, within_s=15)
        assert "broker" in body["problems"]
    finally:
        await run("rabbitmqctl", "start_app")
        await run("rabbitmqctl", "await_startup")
    await wait_for_readiness(service, ready=True, within_s=60)
    result = await job.result(timeout=120)
    assert result.status is JobStatus.SUCCEEDED, result.error
    after = await client.submit("quick_check", {"value": 3})
    assert (await after.result(timeout=60)).status is JobStatus.SUCCEEDED


async def test_metrics_count_handled_messages(
    service: Settings, worker: Worker, client: SegueClient
) -> None:
    job = await client.submit("quick_check", {"value": 1})
    assert (await job.result()).status is JobStatus.SUCCEEDED
    url = f"http://127.0.0.1:{service.http_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(scrape)
    events = f'segue_messages_total{{queue="{service.namespace}.events",verdict="ack"}}'
    line = next(line for line in text.splitlines() if line.startswith(events))
    assert float(line.split()[-1]) >= 2, "started and succeeded at least"
    assert "segue_ready 1.0" in text
