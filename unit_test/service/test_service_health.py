"""Readiness follows what the probes find, and the HTTP endpoints say so."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any, cast

from segue.service.health import HealthMonitor, HealthServer
from segue.service.metrics import Metrics
from segue.store.repository import Store


class FakeStore:
    """A store whose database is up or down at the test's command."""

    def __init__(self) -> None:
        self.down = False

    async def ping(self) -> None:
        if self.down:
            raise ConnectionRefusedError("connection refused")

    async def outbox_size(self) -> int:
        return 3


class FakeConnection:
    """A broker connection that is connected or reconnecting."""

    def __init__(self) -> None:
        self.is_closed = False
        self.connected = asyncio.Event()
        self.connected.set()


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


async def test_readiness_reports_each_outage_and_recovery() -> None:
    store, connection, metrics = FakeStore(), FakeConnection(), Metrics()
    monitor = HealthMonitor(cast(Store, store), cast(Any, connection), metrics)
    server = HealthServer(monitor, metrics, "127.0.0.1", 0)
    server.start()
    try:
        await monitor.probe()
        assert await asyncio.to_thread(_get, server.port, "/readyz") == (200, {"status": "ready"})

        store.down = True
        connection.connected.clear()
        await monitor.probe()
        status, body = await asyncio.to_thread(_get, server.port, "/readyz")
        assert status == 503
        assert "ConnectionRefusedError" in body["problems"]["database"]
        assert "reconnecting" in body["problems"]["broker"]
        assert await asyncio.to_thread(_get, server.port, "/healthz") == (200, {"status": "alive"})

        store.down = False
        connection.connected.set()
        await monitor.probe()
        assert (await asyncio.to_thread(_get, server.port, "/readyz"))[0] == 200
        assert (await asyncio.to_thread(_get, server.port, "/nope"))[0] == 404
    finally:
        server.stop()
