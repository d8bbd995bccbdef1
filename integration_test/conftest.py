"""Fixtures shared by every integration test: real PostgreSQL databases.

The server comes from ``SEGUE_TEST_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); its database is only used to
create and drop test databases, so the role needs ``CREATEDB``. When the server
cannot be reached, every test that needs it FAILS with a message saying how to
fix that: a skipped integration test would hide a broken setup.

Fixtures:

- ``amqp_url`` (session): the RabbitMQ URL (``SEGUE_TEST_AMQP_URL``, default the
  local broker), checked reachable; the test FAILS otherwise.
- ``postgres_url`` (session): the server URL, checked reachable.
- ``migrated_template`` (session): name of a database migrated to head once per
  session, the template every test database is cloned from; dropped at the end.
- ``database_url`` (function): plain ``postgresql://`` URL of a fresh database
  of its own for this test, already migrated (cloned from the template in
  milliseconds); dropped, connections and all, after the test. Pass it to
  ``Store.connect``, ``upgrade_database`` or the service settings as it is.
- ``unmigrated_database_url`` (function): URL of a database that does not exist
  yet (for tests of database creation and migration); dropped afterwards if
  something created it.
- ``store`` (function, async): a :class:`~segue.store.repository.Store` on
  ``database_url``, closed after the test.
- ``sql_engine`` (function, async): a SQLAlchemy engine on ``database_url`` for
  tests that look at the tables with raw SQL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import aio_pika
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from segue.store.migrate import upgrade_database
from segue.store.repository import Store
from segue.store.urls import async_url, parse_url, sync_url, with_database

AMQP_URL_ENV = "SEGUE_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DATABASE_URL_ENV = "SEGUE_TEST_DATABASE_URL"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 5


def amqp_url_from_env() -> str:
    """The test broker's URL: ``SEGUE_TEST_AMQP_URL`` or the local default."""
    return os.environ.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL


def server_url_from_env() -> str:
    """The test server URL: ``SEGUE_TEST_DATABASE_URL`` or the local default."""
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_SERVER_URL


def require_server(url: str) -> None:
    """Fail the calling test, saying how to fix it, unless the server answers."""
    engine = _admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip()
    else:
        return
    finally:
        engine.dispose()
    shown = parse_url(url).render_as_string(hide_password=True)
    pytest.fail(
        f"PostgreSQL is not reachable at {shown} ({reason}). Start it (for example "
        "`docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16`) "
        f"or set {DATABASE_URL_ENV} to a server where this role may create databases.",
        pytrace=False,
    )


def unique_database_name(prefix: str) -> str:
    """A database name no other test (or test session) uses."""
    return f"{prefix}_{uuid4().hex[:12]}"


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create database ``name`` (a copy of ``template`` if given); return its URL."""
    engine = _admin_engine(server_url)
    try:
        with engine.connect() as connection:
            statement = f"CREATE DATABASE {_quote(engine, name)}"
            if template is not None:
                statement += f" TEMPLATE {_quote(engine, template)}"
            connection.execute(text(statement))
    finally:
        engine.dispose()
    return _url_text(with_database(server_url, name))


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, closing whatever is still connected."""
    engine = _admin_engine(server_url)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {_quote(engine, name)} WITH (FORCE)"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The test broker's URL, checked reachable (fails the test otherwise)."""
    url = amqp_url_from_env()

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at {url} ({exc!r}). Start it (`rabbitmq-server "
            f"-detached`, or `docker run -d -p 5672:5672 rabbitmq:3.13`) or set {AMQP_URL_ENV}.",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL, checked reachable (fails the test otherwise)."""
    url = server_url_from_env()
    require_server(url)
    return url


@pytest.fixture(scope="session")
def migrated_template(postgres_url: str) -> Iterator[str]:
    """Name of a database migrated to head once per session; test databases copy it."""
    name = unique_database_name("segue_template")
    try:
        upgrade_database(with_database(postgres_url, name))
        yield name
    finally:
        drop_database(postgres_url, name)


@pytest.fixture
def database_url(postgres_url: str, migrated_template: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test only; dropped afterwards."""
    name = unique_database_name("segue_it")
    url = create_database(postgres_url, name, template=migrated_template)
    try:
        yield url
    finally:
        drop_database(postgres_url, name)


@pytest.fixture
def unmigrated_database_url(postgres_url: str) -> Iterator[str]:
    """URL of a database that does not exist yet; dropped afterwards if created."""
    name = unique_database_name("segue_it")
    try:
        yield _url_text(with_database(postgres_url, name))
    finally:
        drop_database(postgres_url, name)


@pytest.fixture
async def sql_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A SQLAlchemy engine on this test's database, for inspecting it with raw SQL."""
    engine = create_async_engine(async_url(database_url), poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A store on this test's database, closed after the test."""
    opened = await Store.connect(database_url, pool_size=5)
    try:
        yield opened
    finally:
        await opened.close()


def _admin_engine(url: str | URL) -> Engine:
    return create_engine(
        sync_url(url),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def _quote(engine: Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote_identifier(name)


def _url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)
