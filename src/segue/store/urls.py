"""Database URLs: the user gives one, the store derives the driver-specific ones.

Users write a plain ``postgresql://user:password@host:port/db`` (``postgres://``
and URLs that name a driver are accepted too). The service runs on asyncpg
(:func:`asyncpg_dsn`); Alembic runs on psycopg2. TLS is spelled ``sslmode`` in
both DSNs (SQLAlchemy's asyncpg dialect says ``ssl``), so that option is
translated as well; the other libpq options (``sslrootcert``, ``sslcert``,
``sslkey``) pass through unchanged, e.g.
``postgresql://segue@db:5432/segue?sslmode=verify-full&sslrootcert=/certs/ca.pem``
(docs/security.md).
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from segue.errors import ConfigurationError

ASYNC_DRIVER = "postgresql+asyncpg"
SYNC_DRIVER = "postgresql+psycopg2"
_BACKENDS = {"postgresql", "postgres"}


def parse_url(url: str | URL) -> URL:
    """Parse ``url`` and check that it points at PostgreSQL.

    Raises :class:`ConfigurationError` for anything that is not a PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"database URL is not a valid URL: {exc}") from exc
    if parsed.get_backend_name() not in _BACKENDS:
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigurationError(
            f"database URL {shown!r} must be a PostgreSQL URL (postgresql://user@host:port/db)"
        )
    if not parsed.database:
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigurationError(f"database URL {shown!r} must name a database")
    return parsed


def async_url(url: str | URL) -> URL:
    """The SQLAlchemy asyncpg URL (``postgresql+asyncpg://``), for tools and tests.

    SQLAlchemy hands its query options to ``asyncpg.connect()`` as keywords, which
    know ``ssl`` but not ``sslrootcert``: for certificate files use
    :func:`asyncpg_dsn`, as the service does.
    """
    parsed = parse_url(url).set(drivername=ASYNC_DRIVER)
    return _rename_query_key(parsed, "sslmode", "ssl")


def asyncpg_dsn(url: str | URL) -> str:
    """The ``postgresql://`` DSN asyncpg connects with (TLS spelled ``sslmode``)."""
    parsed = _rename_query_key(parse_url(url).set(drivername="postgresql"), "ssl", "sslmode")
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str | URL) -> URL:
    """The psycopg2 URL (``postgresql+psycopg2://``) migrations run on."""
    parsed = parse_url(url).set(drivername=SYNC_DRIVER)
    return _rename_query_key(parsed, "ssl", "sslmode")


def with_database(url: str | URL, name: str) -> URL:
    """``url`` pointing at database ``name`` on the same server, same driver."""
    return parse_url(url).set(database=name)


def _rename_query_key(url: URL, old: str, new: str) -> URL:
    """Move query option ``old`` to ``new`` unless ``new`` is already given."""
    if old not in url.query:
        return url
    value = url.query[old]
    url = url.difference_update_query([old])
    if new in url.query:
        return url
    return url.update_query_dict({new: value})
