"""End-to-end latency and throughput of the orchestrator on local services.

Runs the real orchestrator and demo workers in this process against a fresh
database and namespace, then measures:

- latency: one 3-step ``energy_plan`` job (step_seconds=0) at a time, submit
  to result, over ``--jobs`` jobs (median, p95);
- burst: ``--burst`` instant ``quick_check`` jobs submitted at once, time until
  every result arrived (jobs/s).

    .venv/bin/python bench/bench_e2e.py --jobs 50 --burst 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from uuid import uuid4

import aio_pika
from sqlalchemy import create_engine, text

from segue.client import SegueClient
from segue.demo import demo_handlers
from segue.logs import configure_logging
from segue.protocol.messages import JobStatus
from segue.protocol.names import Names
from segue.protocol.topology import exchanges
from segue.service.app import run_service
from segue.settings import Settings
from segue.store.urls import sync_url, with_database
from segue.worker import Worker
from segue.workflows.loader import load_workflows

CONFIG = Path(__file__).resolve().parents[1] / "config" / "workflow_config.json"


async def main(args: argparse.Namespace) -> None:
    """Run the scenario and print the figures."""
    configure_logging(os.environ.get("SEGUE_LOG_LEVEL", "warning"), "json")
    names = Names(f"bench{uuid4().hex[:8]}")
    database = f"segue_bench_{uuid4().hex[:8]}"
    settings = Settings(
        amqp_url=args.amqp_url,
        database_url=str(with_database(args.postgres_url, database).render_as_string(False)),
        namespace=names.namespace,
        workflow_config=CONFIG,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(run_service(settings, stop, ready))
    await asyncio.wait_for(ready.wait(), 60)
    worker = Worker(
        handlers=demo_handlers(),
        amqp_url=args.amqp_url,
        namespace=names.namespace,
        concurrency=args.concurrency,
    )
    worker_task = asyncio.create_task(worker.run())
    try:
        async with SegueClient(args.amqp_url, namespace=names.namespace) as client:
            await latency(client, args.jobs)
            await burst(client, args.burst)
    finally:
        worker.stop()
        await worker_task
        stop.set()
        await service
        await cleanup(args, names, database)


async def latency(client: SegueClient, jobs: int) -> None:
    """Submit-to-result time of one 3-step job at a time."""
    samples = []
    for _ in range(jobs):
        start = time.perf_counter()
        job = await client.submit("energy_plan", {"step_seconds": 0})
        result = await job.result()
        samples.append(time.perf_counter() - start)
        assert result.status is JobStatus.SUCCEEDED, result.error
    samples.sort()
    p95 = samples[int(0.95 * (len(samples) - 1))]
    print(
        f"latency energy_plan (4 steps run, step_seconds=0): jobs={jobs} "
        f"median={statistics.median(samples) * 1000:.0f} ms p95={p95 * 1000:.0f} ms"
    )


async def burst(client: SegueClient, jobs: int) -> None:
    """Many instant one-step jobs at once; every result must arrive."""
    start = time.perf_counter()
    handles = [await client.submit("quick_check", {"step_seconds": 0}) for _ in range(jobs)]
    results = await asyncio.gather(*(h.result(timeout=600) for h in handles))
    elapsed = time.perf_counter() - start
    succeeded = sum(r.status is JobStatus.SUCCEEDED for r in results)
    print(
        f"burst quick_check: jobs={jobs} succeeded={succeeded} lost={jobs - succeeded} "
        f"elapsed={elapsed:.1f} s throughput={jobs / elapsed:.0f} jobs/s"
    )


async def cleanup(args: argparse.Namespace, names: Names, database: str) -> None:
    """Drop the benchmark's database, queues and exchanges."""
    connection = await aio_pika.connect(args.amqp_url)
    async with connection:
        channel = await connection.channel()
        queues = [names.commands_queue, names.events_queue, names.dead_queue]
        queues += [names.task_queue(q) for q in load_workflows(CONFIG).queues()]
        for queue in queues:
            await channel.queue_delete(queue)
        for spec in exchanges(names):
            await channel.exchange_delete(spec.name)
    engine = create_engine(sync_url(args.postgres_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    engine.dispose()


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
