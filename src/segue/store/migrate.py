"""Create the database if needed and bring its schema to the newest revision.

``segue db upgrade`` and ``segue serve`` call :func:`upgrade_database`. Several
replicas may call it at the same time: creating the database tolerates a
concurrent creator, and Alembic runs under a PostgreSQL advisory lock, so one
replica migrates while the others wait and then find nothing left to do.

This module runs synchronously on psycopg2 (Alembic is synchronous).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from segue.errors import SegueError
from segue.store.urls import parse_url, sync_url, with_database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MAINTENANCE_DATABASE = "postgres"
MIGRATION_LOCK_KEY = 0x5E6E_0001
"""Advisory-lock key held while migrating; any fixed 64-bit number unique to Segue."""

CONNECT_TIMEOUT_S = 10
# SQLSTATEs of a database that another session created first: duplicate_database,
# or unique_violation on pg_database when both CREATE DATABASE calls raced.
_ALREADY_CREATED = {"42P04", "23505"}


class DatabaseSetupError(SegueError):
    """The database could not be reached, created or migrated; the message says why."""


def upgrade_database(database_url: str | URL) -> None:
    """Create the database named in ``database_url`` if missing, then migrate it to head."""
    ensure_database(database_url)
    engine = _sync_engine(database_url)
    try:
        with engine.connect() as connection:
            _upgrade_locked(connection, database_url)
    finally:
        engine.dispose()


def current_revision(database_url: str | URL) -> str | None:
    """The Alembic revision the database is at; None for a database never migrated."""
    engine = _sync_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision this version of Segue ships."""
    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
    if head is None:
        raise DatabaseSetupError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def alembic_config(database_url: str | URL | None) -> Config:
    """An Alembic config for our migrations (no ``alembic.ini``), with the psycopg2 URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        rendered = sync_url(database_url).render_as_string(hide_password=False)
        # Config values go through ConfigParser interpolation: escape '%'.
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def ensure_database(database_url: str | URL) -> None:
    """Create the database if it does not exist yet (a concurrent creator is fine)."""
    engine = _sync_engine(database_url)
    try:
        with engine.connect():
            return
    except OperationalError as exc:
        # Unreachable server or missing database: only the server can tell which.
        _create_database(database_url, cause=exc)
    finally:
        engine.dispose()


def _create_database(database_url: str | URL, cause: OperationalError) -> None:
    url = parse_url(database_url)
    name = url.database
    assert name is not None  # parse_url guarantees a database name
    engine = _sync_engine(with_database(url, MAINTENANCE_DATABASE), autocommit=True)
    try:
        with engine.connect() as connection:
            if not _database_exists(connection, name):
                _create_tolerating_race(connection, name)
    except OperationalError as exc:
        shown = url.render_as_string(hide_password=True)
        raise DatabaseSetupError(
            f"cannot connect to the database {shown}: {cause.orig}; "
            f"creating it through database {MAINTENANCE_DATABASE!r} failed too: {exc.orig}"
        ) from cause
    finally:
        engine.dispose()


def _database_exists(connection: Connection, name: str) -> bool:
    found = connection.execute(
        text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
    )
    return found.scalar() is not None


def _create_tolerating_race(connection: Connection, name: str) -> None:
    quoted = connection.dialect.identifier_preparer.quote_identifier(name)
    try:
        connection.execute(text(f"CREATE DATABASE {quoted}"))
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) not in _ALREADY_CREATED:
            raise


def _upgrade_locked(connection: Connection, database_url: str | URL) -> None:
    """Run ``alembic upgrade head`` on ``connection`` while holding the migration lock.

    The lock is session-level, so it outlives the transactions Alembic commits;
    it is released explicitly, and by the server if the connection drops.
    """
    connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
    connection.commit()
    try:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    finally:
        connection.rollback()
        connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
        connection.commit()


def _sync_engine(database_url: str | URL, *, autocommit: bool = False) -> Engine:
    """A pool-less psycopg2 engine: migration connections must not linger."""
    options: dict[str, object] = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    return create_engine(sync_url(database_url), poolclass=NullPool, **options)
