"""Stopping and starting the local RabbitMQ and PostgreSQL servers, for fault tests.

Each restart starts the service again in a ``finally`` block, and
:func:`ensure_services_running_sync` (run after every test of this directory)
starts whatever is still down, so a failing test never leaves a broken setup
behind for the tests that follow.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aio_pika

COMMAND_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 5.0
RABBITMQ_GRACE_S = 15.0
CHANNEL_TICK_MS = 60_000
"""RabbitMQ's default ``channel_tick_interval``."""
POSTGRES_CONFIG_DIR = Path("/etc/postgresql")
POSTGRES_CLUSTER = "main"


class ServiceCommandError(RuntimeError):
    """A service control command failed; the message holds its output."""


def postgres_version() -> str:
    """The version directory of the local PostgreSQL cluster (e.g. ``15``)."""
    versions = sorted(p.name for p in POSTGRES_CONFIG_DIR.iterdir() if p.is_dir())
    if not versions:
        raise ServiceCommandError(f"no PostgreSQL cluster configured under {POSTGRES_CONFIG_DIR}")
    return versions[-1]


def pg_ctlcluster(action: str, *options: str) -> list[str]:
    """The argv of ``pg_ctlcluster`` for ``action`` on the local cluster."""
    return [
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        postgres_version(),
        POSTGRES_CLUSTER,
        action,
        *options,
    ]


async def run_command(*argv: str, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
    """Run a command to completion; raise :class:`ServiceCommandError` unless it exits 0."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        text = output.decode(errors="replace").strip()
        raise ServiceCommandError(f"{' '.join(argv)} exited {process.returncode}: {text}")


async def restart_rabbitmq(amqp_url: str, down_s: float) -> None:
    """Stop the RabbitMQ application, wait ``down_s`` seconds, start it again.

    Every connection drops; durable queues and persistent messages survive.
    """
    try:
        await run_command("rabbitmqctl", "stop_app")
        await asyncio.sleep(down_s)
    finally:
        await run_command("rabbitmqctl", "start_app")
        await run_command("rabbitmqctl", "await_startup")
        await ensure_rabbitmq(amqp_url)


async def restart_postgres(down_s: float) -> None:
    """Stop PostgreSQL (fast shutdown: sessions are cut), wait ``down_s``, start it."""
    try:
        await stop_postgres()
        await asyncio.sleep(down_s)
    finally:
        await ensure_postgres()


async def stop_postgres(tries: int = 5) -> None:
    """Stop the running server; if another process is restarting it, wait and try again."""
    for attempt in range(1, tries + 1):
        await ensure_postgres()
        try:
            await run_command(*pg_ctlcluster("stop", "-m", "fast"))
        except ServiceCommandError:
            if attempt == tries:
                raise
            await asyncio.sleep(1.0)
        else:
            return


async def rabbitmq_serves(amqp_url: str) -> bool:
    """Whether the broker accepts a connection and opens a channel on it."""
    try:
        connection = await aio_pika.connect(amqp_url, timeout=PROBE_TIMEOUT_S)
    except Exception:
        return False
    try:
        await connection.channel()
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
    return True


async def ensure_rabbitmq(amqp_url: str) -> None:
    """Make sure RabbitMQ serves channels, repairing it by the least disruptive means.

    In order: wait a little (another test may be restarting it), start its
    application, restore ``channel_tick_interval`` (a node whose setting was
    unset accepts connections but crashes every new channel in
    ``rabbit_channel:init_tick_timer``), and finally restart the whole node.
    """
    repairs = (
        _wait_for_rabbitmq,
        _start_rabbitmq_app,
        _restore_channel_tick_interval,
        _restart_rabbitmq_node,
    )
    for repair in repairs:
        if await rabbitmq_serves(amqp_url):
            return
        with contextlib.suppress(ServiceCommandError):
            await repair()
    if not await rabbitmq_serves(amqp_url):
        raise ServiceCommandError(f"RabbitMQ at {amqp_url} does not serve channels after a restart")


async def _wait_for_rabbitmq() -> None:
    await run_command("rabbitmqctl", "await_startup", "--timeout", str(int(RABBITMQ_GRACE_S)))


async def _start_rabbitmq_app() -> None:
    await run_command("rabbitmqctl", "start_app")
    await run_command("rabbitmqctl", "await_startup")


async def _restore_channel_tick_interval() -> None:
    expression = f"application:set_env(rabbit, channel_tick_interval, {CHANNEL_TICK_MS})."
    await run_command("rabbitmqctl", "eval", expression)


async def _restart_rabbitmq_node() -> None:
    with contextlib.suppress(ServiceCommandError):
        await run_command("rabbitmqctl", "stop")
    await run_command("rabbitmq-server", "-detached")
    deadline = asyncio.get_running_loop().time() + COMMAND_TIMEOUT_S
    while True:  # await_startup fails until the new node has registered itself
        try:
            await run_command("rabbitmqctl", "await_startup")
        except ServiceCommandError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(2.0)
        else:
            return


async def postgres_runs() -> bool:
    """Whether the PostgreSQL cluster is running."""
    try:
        await run_command(*pg_ctlcluster("status"))
    except ServiceCommandError:
        return False
    return True


async def ensure_postgres() -> None:
    """Start PostgreSQL if it is not running (another process may be starting it too)."""
    if await postgres_runs():
        return
    try:
        await run_command(*pg_ctlcluster("start"))
    except ServiceCommandError:
        if not await postgres_runs():
            raise


def ensure_services_running_sync(amqp_url: str) -> None:
    """Blocking: leave RabbitMQ and PostgreSQL running (call it outside an event loop)."""

    async def ensure() -> None:
        try:
            await ensure_rabbitmq(amqp_url)
        finally:
            await ensure_postgres()

    asyncio.run(ensure())
