"""The baseline worker: take a task, publish its result (persistent, confirmed), ack.

BASELINE_AMQP_URL=... BASELINE_PREFIX=... python -m bench.baseline.worker
"""

from __future__ import annotations

import asyncio
import json
import signal

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bench.baseline.wire import PREFETCH, Config, declare_queue, message


class InstantWorker:
    """Answers every task at once with an empty output."""

    def __init__(self, exchange: AbstractExchange, results_queue: str) -> None:
        self._exchange = exchange
        self._results_queue = results_queue

    async def on_task(self, incoming: AbstractIncomingMessage) -> None:
        """Publish the step's result, then acknowledge the task."""
        task = json.loads(incoming.body)
        result = message({"job_id": task["job_id"], "step": task["step"], "output": {}})
        await self._exchange.publish(result, routing_key=self._results_queue)
        await incoming.ack()


async def serve(config: Config) -> None:
    """Consume tasks until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(config.amqp_url)
    # Without a broker there is nothing to do: end, so the suite notices at once.
    connection.close_callbacks.add(lambda *_: stop.set())
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=PREFETCH)
        await declare_queue(publish_channel, config.results_queue)
        worker = InstantWorker(publish_channel.default_exchange, config.results_queue)
        tasks = await declare_queue(consume_channel, config.task_queue)
        await tasks.consume(worker.on_task)
        await stop.wait()
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(serve(Config.from_env()))
