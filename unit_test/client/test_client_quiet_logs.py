"""The client SDK prints nothing unless the application configured logging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs

from segue.client import SegueClient
from structlog_state import unconfigured_structlog  # noqa: F401 - a fixture


@dataclass
class Delivery:
    body: bytes
    correlation_id: str | None = None
    message_id: str | None = "m1"


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
