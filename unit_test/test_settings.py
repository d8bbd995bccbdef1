"""Settings come from SEGUE_* variables and bad values name the setting."""

from __future__ import annotations

import pytest

from segue.errors import ConfigurationError
from segue.protocol.topology import DeadLetterBounds
from segue.settings import load_settings


def test_defaults_point_at_local_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SEGUE_AMQP_URL", "SEGUE_DATABASE_URL", "SEGUE_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.database_url.endswith("127.0.0.1:5432/segue")
    assert settings.namespace == "segue"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGUE_NAMESPACE", "acme")
    monkeypatch.setenv("SEGUE_PREFETCH", "8")
    settings = load_settings()
    assert settings.namespace == "acme"
    assert settings.prefetch == 8


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("SEGUE_AMQP_URL", "http://x", "SEGUE_AMQP_URL: Value error, must start with amqp://"),
        ("SEGUE_DATABASE_URL", "mysql://x/db", "SEGUE_DATABASE_URL: Value error, must be a"),
        ("SEGUE_DATABASE_URL", "postgresql://host", "must name a database"),
        ("SEGUE_NAMESPACE", "Bad Name", "SEGUE_NAMESPACE"),
        ("SEGUE_PREFETCH", "0", "SEGUE_PREFETCH"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError, match="invalid settings") as error:
        load_settings()
    assert message in str(error.value)


def test_passwords_are_masked_for_logs() -> None:
    settings = load_settings(
        amqp_url="amqp://user:secret@broker:5672/",
        database_url="postgresql://segue:hunter2@db/segue",
    )
    shown = str(settings.safe_dict())
    assert "secret" not in shown
    assert "hunter2" not in shown
    assert "user:***@broker" in shown


def test_retention_and_dead_letter_bounds_have_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "SEGUE_RETENTION_DAYS",
        "SEGUE_RETENTION_INTERVAL_S",
        "SEGUE_DEAD_LETTER_MAX_LENGTH",
        "SEGUE_DEAD_LETTER_TTL_DAYS",
    ):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert (settings.retention_days, settings.retention_interval_s) == (30, 600)
    assert settings.dead_letter_bounds == DeadLetterBounds(max_length=100_000, ttl_days=14)


def test_retention_and_dead_letter_bounds_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGUE_RETENTION_DAYS", "0")
    monkeypatch.setenv("SEGUE_RETENTION_INTERVAL_S", "60")
    monkeypatch.setenv("SEGUE_DEAD_LETTER_MAX_LENGTH", "500")
    monkeypatch.setenv("SEGUE_DEAD_LETTER_TTL_DAYS", "0")
    settings = load_settings()
    assert (settings.retention_days, settings.retention_interval_s) == (0, 60)
    assert settings.dead_letter_bounds == DeadLetterBounds(max_length=500, ttl_days=0)


@pytest.mark.parametrize(
    "var",
    [
        "SEGUE_RETENTION_DAYS",
        "SEGUE_RETENTION_INTERVAL_S",
        "SEGUE_DEAD_LETTER_MAX_LENGTH",
        "SEGUE_DEAD_LETTER_TTL_DAYS",
    ],
)
def test_negative_bounds_are_refused(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "-1")
    with pytest.raises(ConfigurationError, match=var):
        load_settings()
