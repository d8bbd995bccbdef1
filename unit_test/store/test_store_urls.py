"""One user-given database URL -> the asyncpg and psycopg2 URLs."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import create_engine

from segue.errors import ConfigurationError
from segue.store.urls import async_url, asyncpg_dsn, sync_url, with_database


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://u:p@db:5433/segue",
        "postgres://u:p@db:5433/segue",
        "postgresql+psycopg2://u:p@db:5433/segue",
        "postgresql+asyncpg://u:p@db:5433/segue",
    ],
)
def test_any_postgres_spelling_gives_both_driver_urls(given: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == (
        "postgresql+asyncpg://u:p@db:5433/segue"
    )
    assert sync_url(given).render_as_string(hide_password=False) == (
        "postgresql+psycopg2://u:p@db:5433/segue"
    )


def test_password_with_special_characters_survives() -> None:
    url = async_url("postgresql://u:p%40ss%2Fw@db/segue")

    assert url.password == "p@ss/w"


def test_tls_option_is_spelled_for_each_driver() -> None:
    assert async_url("postgresql://u@db/segue?sslmode=require").query == {"ssl": "require"}
    assert sync_url("postgresql+asyncpg://u@db/segue?ssl=require").query == {"sslmode": "require"}


def test_with_database_keeps_server_and_driver() -> None:
    url = with_database("postgresql+asyncpg://u:p@db:5433/segue", "postgres")

    assert url.render_as_string(hide_password=False) == "postgresql+asyncpg://u:p@db:5433/postgres"


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://u@db/segue", "must be a PostgreSQL URL"),
        ("postgresql://u@db", "must name a database"),
        ("not a url", "not a valid URL"),
    ],
)
def test_unusable_urls_are_configuration_errors(given: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        async_url(given)


def test_errors_do_not_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        sync_url("mysql://u:secret@db/segue")

    assert "secret" not in str(caught.value)


VERIFY_FULL = "postgresql://u:p@db:5432/segue?sslmode=verify-full&sslrootcert=/certs/ca.pem"


def test_tls_certificate_options_reach_asyncpg() -> None:
    dsn = urlsplit(asyncpg_dsn(VERIFY_FULL))

    assert dsn.scheme == "postgresql"
    assert parse_qs(dsn.query) == {"sslmode": ["verify-full"], "sslrootcert": ["/certs/ca.pem"]}


def test_tls_certificate_options_reach_psycopg2() -> None:
    url = sync_url(VERIFY_FULL)
    _, connect_kwargs = create_engine(url).dialect.create_connect_args(url)

    assert connect_kwargs["sslmode"] == "verify-full"
    assert connect_kwargs["sslrootcert"] == "/certs/ca.pem"


def test_the_maintenance_database_is_reached_with_the_same_tls_options() -> None:
    url = with_database(VERIFY_FULL, "postgres")

    assert url.database == "postgres"
    assert dict(url.query) == {"sslmode": "verify-full", "sslrootcert": "/certs/ca.pem"}
