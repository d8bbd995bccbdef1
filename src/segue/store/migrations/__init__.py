"""Alembic migrations of the Segue schema; run them with :mod:`segue.store.migrate`.

There is no ``alembic.ini``: :func:`segue.store.migrate.alembic_config` builds the
config in code. To start a new revision, draft it against a database at head and
then edit it by hand into a frozen snapshot (never import ``segue.store.tables``)::

    from alembic import command
    from segue.store.migrate import alembic_config
    command.revision(alembic_config(URL), "what changed", autogenerate=True, rev_id="0002")

The integration test ``test_migrated_schema_matches_the_tables`` fails until the
revisions and :mod:`segue.store.tables` agree.
"""
