"""Broker URLs: TLS options that cannot work are refused at start; logs never show passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from segue.broker.env import check_tls_options, safe_url
from segue.errors import ConfigurationError


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "amqps://user:secret@mq:5671/vh?cafile=/etc/ssl/ca.pem",
            "amqps://user:***@mq:5671/vh?cafile=/etc/ssl/ca.pem",
        ),
        (
            "amqps://user:secret@mq/?cafile=/certs/a@b/ca.pem&no_verify_ssl=0",
            "amqps://user:***@mq/?cafile=/certs/a@b/ca.pem&no_verify_ssl=0",
        ),
        ("amqps://mq/?cafile=/certs/a@b/ca.pem", "amqps://mq/?cafile=/certs/a@b/ca.pem"),
    ],
)
def test_masking_keeps_the_query_and_hides_only_the_password(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_amqps_with_a_readable_ca_file_is_accepted(ca_file: Path) -> None:
    check_tls_options(f"amqps://u:p@mq:5671/?cafile={ca_file}")
    check_tls_options(f"amqps://u:p@mq:5671/?capath={ca_file.parent}&no_verify_ssl=0")
    check_tls_options("amqps://u:p@mq:5671/")  # the system's CAs
    check_tls_options("amqp://u:p@mq:5672/?heartbeat=30")


def test_tls_options_on_a_plain_url_are_refused(ca_file: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cafile\) but does not start with amqps://"):
        check_tls_options(f"amqp://u:secret@mq:5671/?cafile={ca_file}")


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(ConfigurationError, match="option cafile: no such file") as caught:
        check_tls_options(f"amqps://u:p@mq/?cafile={missing}")
    assert str(missing) in str(caught.value)


def test_capath_must_be_a_directory(ca_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="option capath: no such directory"):
        check_tls_options(f"amqps://u:p@mq/?capath={ca_file}")


@pytest.mark.parametrize("value", ["false", "no", "true", ""])
def test_no_verify_ssl_must_be_0_or_1(value: str) -> None:
    # aiormq turns verification off for anything but "0": "false" would disable it.
    with pytest.raises(ConfigurationError, match="no_verify_ssl must be 0 or 1"):
        check_tls_options(f"amqps://u:p@mq/?no_verify_ssl={value}")


def test_a_key_without_its_certificate_is_refused(ca_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="keyfile needs certfile"):
        check_tls_options(f"amqps://u:p@mq/?keyfile={ca_file}")


def test_refusals_do_not_show_the_password(ca_file: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_tls_options(f"amqp://u:secret@mq/?cafile={ca_file}")
    assert "secret" not in str(caught.value)
