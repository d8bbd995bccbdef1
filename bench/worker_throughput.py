"""How many instant step tasks one worker process serves per second.

For each ``--concurrency`` value and round: a fresh namespace on the real
broker, ``--tasks`` step tasks published into one task queue first, then one
worker process (``segue.worker.Worker``, a separate process so that this
script's counting costs it nothing) started on that queue. This process counts
the worker's events on the events queue until every task has sent its
``started`` and its result, and prints tasks/s (from the first event to the
last result), events per task, and the worker process's CPU time per task.

    .venv/bin/python bench/worker_throughput.py --tasks 5000 --concurrency 1 8

Handlers (``--handler``): ``instant`` (``async def``, returns at once),
``blocking`` (plain ``def``, runs in a thread) and ``quick_check`` (the demo
handler with ``step_seconds=0``: eleven ``ctx.progress`` calls, then returns).
The worker logs JSON at ``--log-level`` to ``--worker-log`` (default
/dev/null), as a production worker would log to its collector; ``--profile
FILE`` saves a cProfile of the worker process (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from segue.broker.topology import declare_orchestrator_topology
from segue.protocol.codec import encode
from segue.protocol.messages import StepTask
from segue.protocol.names import Names
from segue.protocol.topology import exchanges

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
HANDLERS = ("instant", "blocking", "quick_check")
PUBLISH_BATCH = 500
RESULT_TYPES = frozenset({"step_succeeded", "step_failed"})


@dataclass
class Tally:
    """Events counted on the events queue."""

    expected: int
    by_type: dict[str, int] = field(default_factory=dict)
    first_at: float | None = None
    last_result_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def results(self) -> int:
        return sum(self.by_type.get(kind, 0) for kind in RESULT_TYPES)

    def count(self, message: AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        if self.first_at is None:
            self.first_at = now
        kind = str(json.loads(message.body).get("type"))
        self.by_type[kind] = self.by_type.get(kind, 0) + 1
        if kind in RESULT_TYPES:
            self.last_result_at = now
            if self.results >= self.expected:
                self.done.set()


@dataclass(frozen=True)
class Round:
    """One measured run."""

    concurrency: int
    tasks: int
    seconds: float
    events_per_task: float
    worker_cpu_ms_per_task: float

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.seconds


def queue_for(handler: str) -> str:
    """The step queue the worker serves for ``handler``."""
    return "quick_check" if handler == "quick_check" else "bench_step"


def make_task(queue: str) -> StepTask:
    """One instant step task."""
    return StepTask(
        job_id=uuid4(),
        workflow="bench",
        step=queue,
        queue=queue,
        attempt=1,
        attempt_id=uuid4(),
        params={"step_seconds": 0},
        heartbeat_s=30.0,
    )


async def prefill(channel: AbstractChannel, names: Names, queue: str, count: int) -> None:
    """Publish ``count`` tasks into the task queue of ``queue``, confirmed."""
    exchange = await channel.get_exchange(names.tasks_exchange)
    for start in range(0, count, PUBLISH_BATCH):
        batch = [
            exchange.publish(
                aio_pika.Message(
                    encode(make_task(queue)), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                ),
                routing_key=queue,
            )
            for _ in range(min(PUBLISH_BATCH, count - start))
        ]
        await asyncio.gather(*batch)


async def delete_namespace(channel: AbstractChannel, names: Names, queue: str) -> None:
    """Remove every queue and exchange the round declared."""
    for name in (
        names.commands_queue,
        names.events_queue,
        names.dead_queue,
        names.task_queue(queue),
    ):
        await channel.queue_delete(name)
    for spec in exchanges(names):
        await channel.exchange_delete(spec.name)


async def measure(args: argparse.Namespace, concurrency: int) -> Round:
    """Prefill, run one worker process, count its events."""
    names = Names(f"bench{uuid4().hex[:10]}")
    queue = queue_for(args.handler)
    connection = await aio_pika.connect(args.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_orchestrator_topology(channel, names, [queue])
        await prefill(channel, names, queue, args.tasks)
        tally = Tally(args.tasks)
        counting = await connection.channel()  # its own channel: nothing else waits on it
        events = await counting.get_queue(names.events_queue)
        tag = await events.consume(lambda message: _count(tally, message), no_ack=True)
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            names.namespace,
            "--concurrency",
            str(concurrency),
            "--handler",
            args.handler,
            "--log-level",
            args.log_level,
            "--worker-log",
            args.worker_log,
            "--amqp-url",
            args.amqp_url,
            *(["--profile", args.profile] if args.profile else []),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.wait_for(tally.done.wait(), args.wait_s)
        except TimeoutError:
            depth = await channel.declare_queue(names.task_queue(queue), passive=True)
            raise SystemExit(
                f"not finished after {args.wait_s} s: events {tally.by_type}, "
                f"{depth.declaration_result.message_count} tasks still queued "
                f"(namespace {names.namespace} kept for inspection)"
            ) from None
        finally:
            worker.send_signal(signal.SIGTERM)
            out, _ = await worker.communicate()
        await events.cancel(tag)
        await delete_namespace(channel, names, queue)
    finally:
        await connection.close()
    assert tally.first_at is not None
    assert tally.last_result_at is not None
    cpu_s = float(json.loads(out.decode().strip().splitlines()[-1])["cpu_s"])
    return Round(
        concurrency=concurrency,
        tasks=args.tasks,
        seconds=tally.last_result_at - tally.first_at,
        events_per_task=sum(tally.by_type.values()) / args.tasks,
        worker_cpu_ms_per_task=cpu_s * 1000 / args.tasks,
    )


async def _count(tally: Tally, message: AbstractIncomingMessage) -> None:
    tally.count(message)


async def serve(args: argparse.Namespace) -> None:
    """The worker process: serve the namespace until SIGTERM, then print its CPU time."""
    from segue.demo.handlers import quick_check
    from segue.logs import configure_logging
    from segue.worker import StepContext, Worker, step_handler
    from segue.worker.runner import serve as serve_worker

    async def instant(ctx: StepContext) -> dict[str, Any]:
        return {"ok": True}

    def blocking(ctx: StepContext) -> dict[str, Any]:
        return {"ok": True}

    configure_logging(args.log_level, "json")
    fn = {"instant": instant, "blocking": blocking}.get(args.handler)
    handler = quick_check if fn is None else step_handler(queue_for(args.handler), fn)
    worker = Worker(
        [handler],
        amqp_url=args.amqp_url,
        namespace=args.serve,
        concurrency=args.concurrency[0],
        worker_id="bench-worker",
    )
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    await serve_worker(worker)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(json.dumps({"cpu_s": time.process_time()}), flush=True)


def report(rounds: list[Round]) -> None:
    """One line per concurrency: median tasks/s with min-max over the rounds."""
    print("| concurrency | tasks | tasks/s (median) | min-max | events/task | worker CPU ms/task |")
    print("|---|---|---|---|---|---|")
    for concurrency in sorted({r.concurrency for r in rounds}):
        mine = [r for r in rounds if r.concurrency == concurrency]
        rates = [r.tasks_per_s for r in mine]
        cpu = statistics.median(r.worker_cpu_ms_per_task for r in mine)
        print(
            f"| {concurrency} | {mine[0].tasks} | {statistics.median(rates):,.0f} "
            f"| {min(rates):,.0f}-{max(rates):,.0f} "
            f"| {statistics.median(r.events_per_task for r in mine):.2f} | {cpu:.3f} |"
        )


async def main(args: argparse.Namespace) -> None:
    """Measure every concurrency ``args.rounds`` times and print the table."""
    rounds: list[Round] = []
    for concurrency in args.concurrency:
        for _ in range(args.rounds):
            measured = await measure(args, concurrency)
            print(
                f"concurrency={concurrency}: {measured.tasks_per_s:,.0f} tasks/s "
                f"({measured.seconds:.2f} s, {measured.events_per_task:.2f} events/task, "
                f"worker {measured.worker_cpu_ms_per_task:.3f} ms CPU/task)",
                file=sys.stderr,
            )
            rounds.append(measured)
    load = os.getloadavg()
    print(f"nproc={os.cpu_count()} load={load[0]:.2f} handler={args.handler}")
    report(rounds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--handler", choices=HANDLERS, default="instant")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--worker-log", default=os.devnull, help="where the worker logs go")
    parser.add_argument("--wait-s", type=float, default=300.0, help="give a round up after this")
    parser.add_argument("--amqp-url", default=os.environ.get("SEGUE_AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument(
        "--profile", metavar="FILE", help="write a cProfile of the worker process to FILE"
    )
    parser.add_argument("--serve", metavar="NAMESPACE", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        sys.stderr = open(arguments.worker_log, "a")  # noqa: SIM115 - the worker's log sink
        asyncio.run(serve(arguments))
    else:
        asyncio.run(main(arguments))
