"""The client SDK prints nothing unless the application configured logging."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import pytest
import structlog
from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs

from segue.client import SegueClient


@dataclass
class Delivery:
    body: bytes
    correlation_id: str | None = None
    message_id: str | None = "m1"


@pytest.fixture
def unconfigured_structlog() -> Iterator[None]:
    """structlog as a program that never configured it has it."""
    saved, was_configured = structlog.get_config(), structlog.is_configured()
    structlog.reset_defaults()
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


async def deliver_garbage(client: SegueClient) -> None:
    """A delivery the client warns about: not an update at all."""
    await client._on_message(cast(AbstractIncomingMessage, Delivery(b"not json")))


@pytest.mark.usefixtures("unconfigured_structlog")
async def test_the_client_prints_nothing_without_logging_configured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await deliver_garbage(SegueClient())
    assert capsys.readouterr() == ("", "")


@pytest.mark.usefixtures("unconfigured_structlog")
async def test_the_client_logs_once_the_application_configured_structlog() -> None:
    with capture_logs() as logs:
        await deliver_garbage(SegueClient())
    assert [entry["event"] for entry in logs] == ["client_message_invalid"]
