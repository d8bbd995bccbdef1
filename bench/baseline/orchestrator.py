"""The baseline orchestrator: one transaction and one confirmed publish per step.

    BASELINE_AMQP_URL=... BASELINE_DATABASE_URL=... BASELINE_PREFIX=... \
        python -m bench.baseline.orchestrator
"""

from __future__ import annotations

import asyncio
import json
import signal
from uuid import UUID

import aio_pika
import asyncpg
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bench.baseline.wire import PREFETCH, STEPS, Config, declare_queue, declare_updates, message

INSERT_JOB = """
INSERT INTO jobs (job_id, workflow, steps, step, status, created_at, updated_at)
VALUES ($1, $2, $3, 0, 'running', now(), now())
ON CONFLICT (job_id) DO NOTHING
"""

ADVANCE_JOB = """
UPDATE jobs
SET step = step + 1,
    status = CASE WHEN step + 1 >= steps THEN 'succeeded' ELSE 'running' END,
    updated_at = now()
WHERE job_id = $1 AND step = $2
RETURNING step, steps
"""


class Orchestrator:
    """Handles submissions and step results, each delivery in its own task."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tasks: AbstractExchange,
        updates: AbstractExchange,
        config: Config,
    ) -> None:
        self._pool = pool
        self._tasks = tasks
        self._updates = updates
        self._config = config

    async def on_submit(self, incoming: AbstractIncomingMessage) -> None:
        """Insert the job row, then dispatch its first step."""
        body = json.loads(incoming.body)
        job_id = UUID(body["job_id"])
        async with self._pool.acquire() as db, db.transaction():
            await db.execute(INSERT_JOB, job_id, body["workflow"], STEPS[body["workflow"]])
        await self._dispatch(job_id, 0)
        await incoming.ack()

    async def on_result(self, incoming: AbstractIncomingMessage) -> None:
        """Advance the job row (fenced by step number), then dispatch or publish the result."""
        body = json.loads(incoming.body)
        job_id = UUID(body["job_id"])
        async with self._pool.acquire() as db, db.transaction():
            row = await db.fetchrow(ADVANCE_JOB, job_id, body["step"])
        if row is not None:
            if row["step"] < row["steps"]:
                await self._dispatch(job_id, row["step"])
            else:
                result = message({"job_id": str(job_id), "status": "succeeded"})
                await self._updates.publish(result, routing_key=f"job.{job_id}.result")
        await incoming.ack()

    async def _dispatch(self, job_id: UUID, step: int) -> None:
        task = message({"job_id": str(job_id), "step": step})
        await self._tasks.publish(task, routing_key=self._config.task_queue)


async def serve(config: Config) -> None:
    """Consume until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pool = await asyncpg.create_pool(config.database_url, min_size=2, max_size=10)
    connection = await aio_pika.connect(config.amqp_url)
    # Without a broker there is nothing to do: end, so the suite notices at once.
    connection.close_callbacks.add(lambda *_: stop.set())
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=PREFETCH)
        await declare_queue(publish_channel, config.task_queue)
        updates = await declare_updates(publish_channel, config)
        orchestrator = Orchestrator(pool, publish_channel.default_exchange, updates, config)
        results = await declare_queue(consume_channel, config.results_queue)
        submissions = await declare_queue(consume_channel, config.submit_queue)
        await results.consume(orchestrator.on_result)
        await submissions.consume(orchestrator.on_submit)
        await stop.wait()
    finally:
        await connection.close()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(serve(Config.from_env()))
