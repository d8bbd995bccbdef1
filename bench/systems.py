"""The two systems under test, behind one small interface.

:class:`SegueSystem` runs the real ``segue serve`` and ``segue worker run``
processes and drives them with the real client SDK; :class:`BaselineSystem`
runs the bare model in :mod:`bench.baseline`. Each run of either gets its own
database and its own broker names, removed again by :meth:`System.cleanup`.

Segue is touched only through public interfaces: the CLI, ``SEGUE_*``
settings, the client and worker SDKs, and the wire names of
:mod:`segue.protocol` (to find and delete its queues).
"""

from __future__ import annotations

import asyncio
import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from uuid import UUID, uuid4

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from bench.baseline.wire import SCHEMA, Config, declare_queue, declare_updates, message
from bench.processes import Child, Children
from bench.services import BrokerProbe, Services, create_database, drop_database
from bench.workers import INSTANT_QUEUE
from segue.client import SegueClient
from segue.client.handle import JobHandle
from segue.protocol.messages import JobFinished, JobStatus
from segue.protocol.names import Names
from segue.protocol.topology import exchanges

WORKFLOWS = Path(__file__).with_name("workflows.json")
PARKED_QUEUE = "bench_parked"
"""The step queue of ``bench_parked``, which no worker serves."""
START_TIMEOUT_S = 120.0


class Shape(StrEnum):
    """A workflow shape both systems run."""

    ONE = "one"
    THREE = "three"
    PARKED = "parked"

    @property
    def steps(self) -> int:
        """Instant steps a job of this shape runs."""
        return 3 if self is Shape.THREE else 1


class BenchClient(Protocol):
    """Submits jobs of a shape and learns when they finish."""

    async def submit(self, shape: Shape) -> asyncio.Future[bool]:
        """Submit one job; the future says whether it succeeded once it finished."""
        ...

    async def run_one(self, shape: Shape) -> bool:
        """Submit one job and wait for its result the way a user would."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...


class System(Protocol):
    """One orchestrator design with its workers and client."""

    label: str

    async def prepare(self) -> None:
        """Create a fresh database and choose fresh broker names."""
        ...

    async def client(self) -> BenchClient:
        """A connected client (its queues exist once this returns)."""
        ...

    async def start_workers(self, children: Children, count: int) -> list[Child]:
        """Start ``count`` worker processes; return once all consume."""
        ...

    async def start_orchestrator(
        self, children: Children, profile: Path | None = None
    ) -> tuple[Child, float]:
        """Start the orchestrator; return it and the ``perf_counter`` time it began consuming."""
        ...

    def parked_queue(self) -> str | None:
        """The queue where tasks of ``Shape.PARKED`` wait, None if not supported."""
        ...

    async def cleanup(self) -> None:
        """Delete the run's queues, exchanges and database."""
        ...


_unfinished: list[System] = []


async def cleanup(system: System) -> None:
    """``system.cleanup()``; if that fails (a service is restarting), try again at the end."""
    try:
        await system.cleanup()
    except Exception:
        _unfinished.append(system)


async def finish_cleanups() -> None:
    """Clean up what could not be cleaned up during the run."""
    while _unfinished:
        await _unfinished.pop().cleanup()


# --- Segue -----------------------------------------------------------------------------


class SegueBenchClient:
    """:class:`SegueClient` behind :class:`BenchClient`.

    Throughput scenarios wait on :meth:`JobHandle.updates` (the result update
    the orchestrator publishes); :meth:`JobHandle.result` also sends a query to
    the orchestrator first, which would double its work in a burst and queue
    behind the submissions in a drain. ``run_one`` uses ``result()`` as users do.
    """

    WORKFLOW = {Shape.ONE: "bench_one", Shape.THREE: "bench_three", Shape.PARKED: "bench_parked"}

    def __init__(self, client: SegueClient) -> None:
        self._client = client
        self._waiting: set[asyncio.Future[bool]] = set()

    async def submit(self, shape: Shape) -> asyncio.Future[bool]:
        handle = await self._client.submit(self.WORKFLOW[shape], {})
        waiting = asyncio.ensure_future(_finished(handle))
        self._waiting.add(waiting)
        waiting.add_done_callback(self._waiting.discard)
        return waiting

    async def run_one(self, shape: Shape) -> bool:
        handle = await self._client.submit(self.WORKFLOW[shape], {})
        result = await handle.result()
        return result.status is JobStatus.SUCCEEDED

    async def close(self) -> None:
        waiting = list(self._waiting)
        for future in waiting:
            future.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await self._client.close()


async def _finished(handle: JobHandle) -> bool:
    async for update in handle.updates():
        if isinstance(update, JobFinished):
            return update.status is JobStatus.SUCCEEDED
    return False


class SegueSystem:
    """The real Segue processes, on a fresh database and namespace.

    ``database``: use this (already upgraded) database instead of a fresh one,
    and leave it in place on cleanup (the preloaded scenario).
    """

    def __init__(self, services: Services, database: str | None = None) -> None:
        self.label = "segue"
        self._services = services
        self._given_database = database
        self._names = Names("bench")
        self._database = ""

    async def prepare(self) -> None:
        token = uuid4().hex[:10]
        self._names = Names(f"bench{token}")
        self._database = self._given_database or f"segue_bench_{token}"
        await upgrade_segue_database(self._services, self._database)

    def env(self) -> dict[str, str]:
        """The ``SEGUE_*`` settings of this run."""
        return {
            "SEGUE_AMQP_URL": self._services.amqp_url,
            "SEGUE_DATABASE_URL": self._services.database_url(self._database),
            "SEGUE_NAMESPACE": self._names.namespace,
            "SEGUE_WORKFLOW_CONFIG": str(WORKFLOWS),
            "SEGUE_HTTP_PORT": "0",
            "SEGUE_LOG_LEVEL": "warning",
            "PYTHONPATH": str(self._services.root),
        }

    async def client(self) -> BenchClient:
        client = SegueClient(
            self._services.amqp_url, self._names.namespace, connection_name="segue-bench"
        )
        await client.connect()
        return SegueBenchClient(client)

    async def start_workers(self, children: Children, count: int) -> list[Child]:
        argv = [self._services.segue, "worker", "run", "bench.workers:instant_worker"]
        workers = [await children.start("segue-worker", argv, self.env()) for _ in range(count)]
        await _wait_consumers(self._services, self._names.task_queue(INSTANT_QUEUE), workers)
        return workers

    async def start_orchestrator(
        self, children: Children, profile: Path | None = None
    ) -> tuple[Child, float]:
        argv = [self._services.segue, "serve"]
        if profile is not None:
            argv = [
                *("py-spy", "record", "--format", "raw", "--rate", "200", "--nonblocking"),
                *("--output", str(profile), "--"),
                *argv,
            ]
        child = await children.start("segue-serve", argv, self.env())
        consuming = await _wait_consumers(self._services, self._names.commands_queue, [child])
        return child, consuming

    def parked_queue(self) -> str | None:
        return self._names.task_queue(PARKED_QUEUE)

    async def cleanup(self) -> None:
        names = self._names
        queues = [names.commands_queue, names.events_queue, names.dead_queue]
        queues += [names.task_queue(q) for q in (INSTANT_QUEUE, PARKED_QUEUE)]
        probe = await BrokerProbe.connect(self._services.amqp_url)
        try:
            await probe.delete(queues, [spec.name for spec in exchanges(names)])
        finally:
            await probe.close()
        if self._given_database is None and self._database:
            await drop_database(self._services, self._database)


async def upgrade_segue_database(services: Services, database: str) -> None:
    """``segue db upgrade`` on ``database`` (which it creates if missing)."""
    env = {"SEGUE_DATABASE_URL": services.database_url(database), "SEGUE_LOG_LEVEL": "warning"}
    async with Children() as children:
        child = await children.start("segue-db-upgrade", [services.segue, "db", "upgrade"], env)
        code = await child.process.wait()
        if code != 0:
            raise RuntimeError(f"segue db upgrade failed ({code}):\n{child.tail()}")


async def _wait_consumers(services: Services, queue: str, children: list[Child]) -> float:
    """Wait until ``queue`` has one consumer per child, failing fast if one dies."""
    probe = await BrokerProbe.connect(services.amqp_url)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for child in children:
                child.check_alive()
            if (await probe.counts(queue))[1] >= len(children):
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue} has no consumers after {START_TIMEOUT_S} s")
            await asyncio.sleep(0.01)
    finally:
        await probe.close()


# --- baseline --------------------------------------------------------------------------


class BaselineBenchClient:
    """Publishes submissions (persistent, confirmed) and matches results by job id."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel, config: Config):
        self._connection = connection
        self._channel = channel
        self._config = config
        self._waiting: dict[UUID, asyncio.Future[bool]] = {}

    @classmethod
    async def connect(cls, config: Config) -> BaselineBenchClient:
        """Connect, declare the submit queue and bind an exclusive queue for results."""
        connection = await aio_pika.connect(config.amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        client = cls(connection, channel, config)
        connection.close_callbacks.add(client._on_close)
        await declare_queue(channel, config.submit_queue)
        updates = await declare_updates(channel, config)
        results = await channel.declare_queue(exclusive=True, auto_delete=True)
        await results.bind(updates, routing_key="job.*.result")
        await results.consume(client._on_result, no_ack=True)
        return client

    async def submit(self, shape: Shape) -> asyncio.Future[bool]:
        job_id = uuid4()
        finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = finished
        body = {"job_id": str(job_id), "workflow": shape.value}
        await self._channel.default_exchange.publish(
            message(body), routing_key=self._config.submit_queue
        )
        return finished

    async def run_one(self, shape: Shape) -> bool:
        return await (await self.submit(shape))

    async def close(self) -> None:
        await self._connection.close()

    def _on_close(self, *_: object) -> None:
        for finished in self._waiting.values():
            if not finished.done():
                finished.set_exception(ConnectionError("the baseline client lost its connection"))
        self._waiting.clear()

    async def _on_result(self, incoming: AbstractIncomingMessage) -> None:
        body = json.loads(incoming.body)
        finished = self._waiting.pop(UUID(body["job_id"]), None)
        if finished is not None and not finished.done():
            finished.set_result(body["status"] == "succeeded")


class BaselineSystem:
    """The bare model in :mod:`bench.baseline`, on a fresh database and queue prefix."""

    def __init__(self, services: Services) -> None:
        self.label = "baseline"
        self._services = services
        self._config = Config(services.amqp_url, "", "base")
        self._database = ""

    async def prepare(self) -> None:
        token = uuid4().hex[:10]
        self._database = f"baseline_bench_{token}"
        await create_database(self._services, self._database)
        url = self._services.database_url(self._database)
        self._config = Config(self._services.amqp_url, url, f"base{token}")
        db = await asyncpg.connect(url)
        try:
            await db.execute(SCHEMA)
        finally:
            await db.close()

    def env(self) -> dict[str, str]:
        """The ``BASELINE_*`` settings of this run."""
        return {**self._config.env(), "PYTHONPATH": str(self._services.root)}

    async def client(self) -> BenchClient:
        return await BaselineBenchClient.connect(self._config)

    async def start_workers(self, children: Children, count: int) -> list[Child]:
        argv = [self._services.python, "-m", "bench.baseline.worker"]
        workers = [await children.start("baseline-worker", argv, self.env()) for _ in range(count)]
        await _wait_consumers(self._services, self._config.task_queue, workers)
        return workers

    async def start_orchestrator(
        self, children: Children, profile: Path | None = None
    ) -> tuple[Child, float]:
        argv = [self._services.python, "-m", "bench.baseline.orchestrator"]
        child = await children.start("baseline-orchestrator", argv, self.env())
        consuming = await _wait_consumers(self._services, self._config.submit_queue, [child])
        return child, consuming

    def parked_queue(self) -> str | None:
        return None

    async def cleanup(self) -> None:
        config = self._config
        probe = await BrokerProbe.connect(self._services.amqp_url)
        try:
            await probe.delete(
                [config.submit_queue, config.results_queue, config.task_queue],
                [config.updates_exchange],
            )
        finally:
            await probe.close()
        if self._database:
            await drop_database(self._services, self._database)
