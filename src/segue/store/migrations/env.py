"""Alembic environment: run migrations online against PostgreSQL.

There is no ``alembic.ini``: :mod:`segue.store.migrate` builds the Alembic config
in code and sets the ``sqlalchemy.url`` main option. When the caller passes an
open connection in ``config.attributes["connection"]`` (so that the migration
runs in the session holding the advisory lock), that connection is used.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from segue.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("the Alembic config has no sqlalchemy.url main option")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("Segue migrations run online only (segue db upgrade)")
_run_online()
