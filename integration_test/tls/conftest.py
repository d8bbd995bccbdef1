"""Fixtures for the TLS tests: a RabbitMQ node that speaks amqps:// and PostgreSQL with TLS.

``ci/tls.sh`` sets both up on this machine (a throwaway CA in ``/tmp/segue-tls``,
a second RabbitMQ node ``segue-tls@localhost`` with amqps on 5681, ``ssl = on``
for the local PostgreSQL cluster). Other servers can be named with
``SEGUE_TEST_TLS_AMQP_URL``, ``SEGUE_TEST_TLS_DATABASE_URL`` (a database the
role may create databases from), ``SEGUE_TEST_TLS_RABBITMQ_NODE`` (for
``rabbitmqctl -n``) and ``SEGUE_TEST_TLS_DIR`` (where ``other-ca.pem``, a CA
that signed neither server certificate, is). When they are missing the tests
FAIL, saying to run ``ci/tls.sh``: a skipped test would hide a broken setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from uuid import uuid4

import aio_pika
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from e2e.conftest import delete_namespace
from segue.protocol.names import Names
from segue.service.app import run_service
from segue.settings import Settings
from segue.store.urls import parse_url, sync_url, with_database

TLS_DIR = Path(os.environ.get("SEGUE_TEST_TLS_DIR") or "/tmp/segue-tls")
AMQP_URL = os.environ.get("SEGUE_TEST_TLS_AMQP_URL") or (
    f"amqps://guest:guest@localhost:5681/?cafile={TLS_DIR}/ca.pem"
)
SERVER_URL = os.environ.get("SEGUE_TEST_TLS_DATABASE_URL") or (
    f"postgresql://postgres@localhost:5432/postgres?sslmode=verify-full&sslrootcert={TLS_DIR}/ca.pem"
)
RABBITMQ_NODE = os.environ.get("SEGUE_TEST_TLS_RABBITMQ_NODE") or "segue-tls@localhost"
OTHER_CA = TLS_DIR / "other-ca.pem"
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "workflow_config.json"
SET_UP = "Run `bash ci/tls.sh` (as root) to set up the local TLS services"
COMMAND_TIMEOUT_S = 30


def not_set_up(what: str, reason: object) -> NoReturn:
    """Fail the calling test: the TLS services are not there."""
    pytest.fail(f"{what} ({reason}). {SET_UP}, or see integration_test/tls/conftest.py.")


@pytest.fixture(scope="session")
def tls_amqp_url() -> str:
    """The amqps:// URL of the TLS broker, checked to accept a verified connection."""

    async def probe() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        not_set_up(f"no TLS RabbitMQ at {AMQP_URL}", repr(exc))
    return AMQP_URL


@pytest.fixture(scope="session")
def tls_server_url() -> str:
    """The PostgreSQL server URL with ``sslmode=verify-full``, checked to connect."""
    engine = admin_engine(SERVER_URL)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        not_set_up(f"no TLS PostgreSQL at {shown(SERVER_URL)}", exc)
    finally:
        engine.dispose()
    return SERVER_URL


@pytest.fixture(scope="session")
def other_ca() -> Path:
    """A CA certificate that signed neither server certificate."""
    if not OTHER_CA.is_file():
        not_set_up(f"no unrelated CA certificate at {OTHER_CA}", "missing")
    return OTHER_CA


@pytest.fixture
def names(tls_amqp_url: str) -> Iterator[Names]:
    """A namespace of this test's own; its queues and exchanges are deleted afterwards."""
    names = Names(f"t{uuid4().hex[:12]}")
    yield names
    asyncio.run(delete_namespace(tls_amqp_url, names))


@dataclass(frozen=True)
class TlsDatabase:
    """A database of this test's own on the TLS server (not created yet)."""

    name: str
    url: str


@pytest.fixture
def tls_database(tls_server_url: str) -> Iterator[TlsDatabase]:
    """A database name and its verify-full URL; dropped afterwards if something created it."""
    name = f"segue_tls_{uuid4().hex[:12]}"
    yield TlsDatabase(
        name, with_database(tls_server_url, name).render_as_string(hide_password=False)
    )
    engine = admin_engine(tls_server_url)
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def service_settings(amqp_url: str, database_url: str, names: Names) -> Settings:
    """Orchestrator settings that migrate (create) the database at start, with fast timers."""
    return Settings(
        amqp_url=amqp_url,
        database_url=database_url,
        namespace=names.namespace,
        workflow_config=DEMO_CONFIG,
        migrate_on_start=True,
        sweep_interval_s=0.2,
        relay_interval_s=0.5,
        relay_grace_s=1.0,
        http_host="127.0.0.1",
        http_port=0,
    )


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[None]:
    """Run the orchestrator in this event loop while the block runs."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(settings, stop, ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED, timeout=60)
    waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set(), "the orchestrator did not become ready in 60 s"
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 40)


async def rabbitmq_connections() -> list[dict[str, Any]]:
    """The TLS node's connections: ``connection_name``, ``ssl`` and ``ssl_protocol`` each."""
    argv = ["rabbitmqctl", "-n", RABBITMQ_NODE, "-q", "list_connections"]
    argv += ["client_properties", "ssl", "ssl_protocol", "--formatter", "json"]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError as exc:
        not_set_up("rabbitmqctl is not installed", exc)
    output, errors = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    if process.returncode != 0:
        not_set_up(f"`{' '.join(argv)}` failed", errors.decode(errors="replace").strip())
    return [
        {
            "connection_name": client_property(row["client_properties"], "connection_name"),
            "ssl": row["ssl"],
            "ssl_protocol": row["ssl_protocol"],
        }
        for row in json.loads(output or b"[]")
    ]


def client_property(properties: list[list[Any]], key: str) -> Any:
    """One value of rabbitmqctl's ``[[key, type, value], ...]`` client properties."""
    return next((value for name, _, value in properties if name == key), None)


def postgres_sessions(server_url: str, database: str) -> list[tuple[bool, str | None]]:
    """``(ssl, TLS version)`` of every session connected to ``database``."""
    engine = admin_engine(server_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT s.ssl, s.version FROM pg_stat_activity a "
                    "JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.datname = :database"
                ),
                {"database": database},
            )
            return [(bool(ssl), version) for ssl, version in rows]
    finally:
        engine.dispose()


def admin_engine(url: str | URL) -> Engine:
    return create_engine(
        sync_url(url),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )


def shown(url: str) -> str:
    return parse_url(url).render_as_string(hide_password=True)
