"""/metrics of a real orchestrator, after real jobs, a dead letter and a fired
schedule: the operator's series are there, with values that match what happened."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from segue.client import SegueClient
from segue.protocol.messages import JobStatus
from segue.protocol.names import Names
from segue.settings import Settings
from segue.store.repository import Store
from segue.worker import Worker

from .conftest import DEMO_CONFIG

FAST = {"step_seconds": 0.1}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test's orchestrator, with a schedule and gauges refreshed every 0.2 s."""
    config = json.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    config.pop("$schema", None)
    config["schedules"] = [
        {"name": "yearly", "workflow": "quick_check", "cron": "0 0 1 1 *", "params": FAST}
    ]
    path = tmp_path / "workflow_config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    update = {"workflow_config": path, "metrics_interval_s": 0.2, "schedule_interval_s": 0.1}
    return settings.model_copy(update=update)


def scrape(port: int) -> Samples:
    """Every sample of /metrics, by name and labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape_until(port: int, name: str, labels: dict[str, str], at_least: float) -> Samples:
    """Scrape until ``name{labels}`` reaches ``at_least`` (the gauges lag a little)."""
    async with asyncio.timeout(20):
        while True:
            samples = await asyncio.to_thread(scrape, port)
            if (value(samples, name, **labels) or 0) >= at_least:
                return samples
            await asyncio.sleep(0.1)


async def test_metrics_show_jobs_steps_queues_dead_letters_and_schedules(
    service: Settings,
    worker: Worker,
    client: SegueClient,
    names: Names,
    amqp_url: str,
    store: Store,
) -> None:
    jobs = [await client.submit("energy_plan", {**FAST, "simulate": False}) for _ in range(2)]
    failing = await client.submit("quick_check", {**FAST, "fail_at": "quick_check"})
    results = [await job.result() for job in [*jobs, failing]]
    assert [r.status for r in results] == [JobStatus.SUCCEEDED] * 2 + [JobStatus.FAILED]
    await publish_garbage(amqp_url, names)
    async with store.transaction() as tx:
        await tx.connection.execute(
            "UPDATE schedules SET next_due_at = $1 WHERE name = 'yearly'",
            datetime.now(UTC) - timedelta(minutes=1),
        )

    port = service.http_port
    await scrape_until(port, "segue_schedules_fired_total", {"outcome": "submitted"}, 1)
    await scrape_until(port, "segue_dead_letter_queue_depth", {}, 1)
    samples = await scrape_until(port, "segue_jobs", {"status": "succeeded"}, 3)

    assert value(samples, "segue_jobs", status="failed") == 1
    assert value(samples, "segue_jobs", status="timed_out") == 0
    assert value(samples, "segue_jobs_submitted_total", workflow="energy_plan") == 2
    assert value(samples, "segue_jobs_submitted_total", workflow="quick_check") == 2
    finished = {"workflow": "energy_plan", "status": "succeeded"}
    assert value(samples, "segue_jobs_finished_total", **finished) == 2
    failed = {"workflow": "quick_check", "status": "failed"}
    assert value(samples, "segue_jobs_finished_total", **failed) == 1
    step = {"workflow": "energy_plan", "step": "prepare", "status": "succeeded"}
    assert value(samples, "segue_step_duration_seconds_count", **step) == 2
    seconds = value(samples, "segue_step_duration_seconds_sum", **step) or 0
    assert 0.2 <= seconds < 30, "two steps of 0.1 s of work each, measured start to end"
    assert value(samples, "segue_step_duration_seconds_count", **{**step, "step": "simulate"}) is (
        None
    ), "a skipped step never ran"
    for queue in ("prepare", "optimise", "simulate", "report", "quick_check"):
        assert value(samples, "segue_task_queue_depth", queue=queue) == 0
        assert value(samples, "segue_task_queue_oldest_age_seconds", queue=queue) is not None
    assert value(samples, "segue_dead_letters_total", queue=names.commands_queue) == 1
    assert value(samples, "segue_schedules", state="enabled") == 1
    assert value(samples, "segue_schedules_overdue") == 0
    assert value(samples, "segue_steps_lost_total", workflow="energy_plan", step="prepare") is None
    assert value(samples, "segue_outbox_rows") is not None


async def publish_garbage(amqp_url: str, names: Names) -> None:
    """A command no orchestrator can read: it is dead-lettered."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names.commands_exchange)
        await exchange.publish(aio_pika.Message(b"not json"), routing_key=names.commands_queue)
