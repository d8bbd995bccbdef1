"""The shared services: RabbitMQ queue probes and PostgreSQL database admin."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import ChannelClosed


@dataclass(frozen=True)
class Services:
    """Where the services are, and how to start Segue's and the suite's programs."""

    amqp_url: str
    postgres_url: str
    """Any database on the server; the suite creates and drops its own next to it."""
    root: Path
    """The repository root (put on ``PYTHONPATH`` for ``bench.*`` modules)."""
    python: str
    segue: str
    """The ``segue`` console script."""

    def database_url(self, database: str) -> str:
        """``postgres_url`` with its database replaced by ``database``."""
        parts = urlsplit(self.postgres_url)
        return urlunsplit(parts._replace(path=f"/{database}"))


class BrokerProbe:
    """Reads queue depths and consumer counts with passive declarations."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None

    @classmethod
    async def connect(cls, amqp_url: str) -> BrokerProbe:
        """A probe on its own connection."""
        return cls(await aio_pika.connect(amqp_url))

    async def close(self) -> None:
        """Close the probe's connection."""
        await self._connection.close()

    async def _open_channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def counts(self, queue: str) -> tuple[int, int]:
        """``(messages ready, consumers)`` of ``queue``; ``(0, 0)`` if it does not exist."""
        channel = await self._open_channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except ChannelClosed:  # 404: the queue is not there (yet)
            self._channel = None
            return 0, 0
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0

    async def wait_messages(self, queue: str, at_least: int, timeout_s: float) -> None:
        """Wait until ``queue`` holds ``at_least`` ready messages."""
        async with asyncio.timeout(timeout_s):
            while (await self.counts(queue))[0] < at_least:  # noqa: ASYNC110 - broker state
                await asyncio.sleep(0.2)

    async def delete(self, queues: list[str], exchanges: list[str]) -> None:
        """Delete queues and exchanges (missing ones are fine)."""
        for queue in queues:
            channel = await self._open_channel()
            with contextlib.suppress(ChannelClosed):
                await channel.queue_delete(queue)
        for exchange in exchanges:
            channel = await self._open_channel()
            with contextlib.suppress(ChannelClosed):
                await channel.exchange_delete(exchange)

    def server_version(self) -> str:
        """RabbitMQ's version, from the connection's server properties."""
        transport = self._connection.transport
        if transport is None:
            return "unknown"
        properties = transport.connection.server_properties
        version = properties.get("version", "unknown")
        return version.decode() if isinstance(version, bytes) else str(version)


async def wait_ready(services: Services, timeout_s: float, stable_s: float = 0.0) -> None:
    """Wait until both services accept connections and have for ``stable_s`` seconds.

    The services are shared: someone else may be restarting them (fault tests).
    """
    async with asyncio.timeout(timeout_s):
        up_since: float | None = None
        while True:
            try:
                admin = await asyncpg.connect(services.postgres_url)
                await admin.close()
                broker = await aio_pika.connect(services.amqp_url)
                await broker.close()
            except (OSError, asyncpg.PostgresError, aio_pika.exceptions.AMQPError):
                up_since = None
            else:
                up_since = up_since or asyncio.get_running_loop().time()
                if asyncio.get_running_loop().time() - up_since >= stable_s:
                    return
            await asyncio.sleep(1)


class ServicesRestartedError(RuntimeError):
    """A service restarted while a step was being measured: its figures are void."""


class RestartWatch:
    """Notices a RabbitMQ or PostgreSQL restart between :meth:`start` and :meth:`check`.

    The services are shared: a restart in the middle of a step would count
    reconnects and redeliveries as throughput, so such a step is run again.
    """

    def __init__(self, connection: AbstractConnection, postgres_started: object) -> None:
        self._connection = connection
        self._postgres_started = postgres_started

    @classmethod
    async def start(cls, services: Services) -> RestartWatch:
        """Remember PostgreSQL's start time and hold a (non-robust) broker connection."""
        return cls(await aio_pika.connect(services.amqp_url), await _postgres_started(services))

    async def check(self, services: Services) -> None:
        """Raise :class:`ServicesRestartedError` if either service restarted since :meth:`start`."""
        broker_lost = self._connection.is_closed
        await self._connection.close()
        if broker_lost:
            raise ServicesRestartedError("RabbitMQ restarted during the step")
        if await _postgres_started(services) != self._postgres_started:
            raise ServicesRestartedError("PostgreSQL restarted during the step")

    async def close(self) -> None:
        """Stop watching."""
        await self._connection.close()


async def _postgres_started(services: Services) -> object:
    admin = await asyncpg.connect(services.postgres_url)
    try:
        return await admin.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await admin.close()


async def create_database(services: Services, database: str) -> None:
    """Create an empty database (the suite's own, dropped by :func:`drop_database`)."""
    admin = await asyncpg.connect(services.postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()


async def drop_database(services: Services, database: str) -> None:
    """Drop a database of the suite, disconnecting whoever is still on it."""
    admin = await asyncpg.connect(services.postgres_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def postgres_version(services: Services) -> str:
    """The server's ``server_version``."""
    admin = await asyncpg.connect(services.postgres_url)
    try:
        return str(await admin.fetchval("SHOW server_version"))
    finally:
        await admin.close()
