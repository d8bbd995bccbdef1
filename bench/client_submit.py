"""How fast the client SDK hands submissions to the broker.

Submits ``--jobs`` jobs through one :class:`segue.client.SegueClient` on a
fresh namespace (no orchestrator needed: the submissions wait in the commands
queue), all at once (``asyncio.gather``) and then one after another, and
prints submissions/s for both. Each submission is one ``job.<id>.*`` binding
on the client's reply queue (a broker round trip, serialised per channel) and
one confirmed publish.

    .venv/bin/python bench/client_submit.py --jobs 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from uuid import uuid4

import aio_pika

from segue.client import SegueClient
from segue.protocol.names import Names
from segue.protocol.topology import exchanges

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def submit_all(client: SegueClient, jobs: int, at_once: bool) -> float:
    """Submit ``jobs`` jobs; returns submissions per second."""
    started = time.perf_counter()
    if at_once:
        await asyncio.gather(*(client.submit("bench", {"i": i}) for i in range(jobs)))
    else:
        for i in range(jobs):
            await client.submit("bench", {"i": i})
    return jobs / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    """Measure both ways on a fresh namespace, then delete it."""
    names = Names(f"bench{uuid4().hex[:10]}")
    async with SegueClient(args.amqp_url, names.namespace) as client:
        at_once = await submit_all(client, args.jobs, at_once=True)
        one_by_one = await submit_all(client, args.jobs, at_once=False)
    connection = await aio_pika.connect(args.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(names.commands_queue)
        for spec in exchanges(names):
            await channel.exchange_delete(spec.name)
    print(f"nproc={os.cpu_count()} load={os.getloadavg()[0]:.2f} jobs={args.jobs}")
    print(f"at once (gather): {at_once:,.0f} submissions/s")
    print(f"one after another: {one_by_one:,.0f} submissions/s")


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--amqp-url", default=os.environ.get("SEGUE_AMQP_URL", DEFAULT_AMQP_URL))
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
