"""Creating and migrating the database, against a real PostgreSQL server."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from segue.store.migrate import current_revision, head_revision, upgrade_database
from segue.store.tables import metadata
from segue.store.urls import sync_url


def schema_differences(database_url: str) -> list[Any]:
    """What Alembic autogenerate would change to make the database match ``metadata``."""
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    assert current_revision(database_url) == head_revision()
    assert schema_differences(database_url) == []


def test_upgrading_again_changes_nothing(database_url: str) -> None:
    upgrade_database(database_url)
    upgrade_database(database_url)

    assert current_revision(database_url) == head_revision()
    assert schema_differences(database_url) == []


def test_upgrade_creates_a_missing_database(unmigrated_database_url: str) -> None:
    upgrade_database(unmigrated_database_url)

    assert current_revision(unmigrated_database_url) == head_revision()


def test_replicas_upgrading_at_once_all_succeed(unmigrated_database_url: str) -> None:
    replicas = 3
    start = threading.Barrier(replicas)

    def upgrade() -> None:
        start.wait()
        upgrade_database(unmigrated_database_url)

    with ThreadPoolExecutor(replicas) as pool:
        futures = [pool.submit(upgrade) for _ in range(replicas)]
        for future in futures:
            future.result(timeout=60)

    assert current_revision(unmigrated_database_url) == head_revision()
    assert schema_differences(unmigrated_database_url) == []
