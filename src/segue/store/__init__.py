"""Persistence of jobs, history and the outbox in PostgreSQL.

- :mod:`segue.store.tables`: the schema (SQLAlchemy Core).
- :mod:`segue.store.migrate`: create the database and apply Alembic migrations.
- :mod:`segue.store.repository`: the asyncio repository the service uses.
- :mod:`segue.store.mapping`: pure conversions between engine state and rows.
- :mod:`segue.store.urls`: one user-given URL -> the asyncpg and psycopg2 URLs.
"""
