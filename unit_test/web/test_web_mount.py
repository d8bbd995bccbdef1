"""The web page on the probes' HTTP server: it gets every path the probes do not
answer, and a slow page never holds up a probe (each request has its own thread)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, cast

from segue.service.health import HealthMonitor, HealthServer
from segue.service.metrics import Metrics
from segue.settings import Settings
from segue.store.repository import Store

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class SlowPage:
    """A WSGI page that answers only once the test lets it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.paths: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.paths.append(environ["PATH_INFO"])
        self.release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]


def fetch(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return int(response.status), response.read()


def test_a_slow_page_never_delays_a_probe_and_gets_every_other_path() -> None:
    metrics = Metrics()
    monitor = HealthMonitor(cast(Store, object()), cast(Any, object()), metrics)
    page = SlowPage()
    server = HealthServer(monitor, metrics, "127.0.0.1", 0, web=page)
    server.start()
    answers: list[tuple[int, bytes]] = []
    try:
        slow = threading.Thread(target=lambda: answers.append(fetch(server.port, "/jobs")))
        slow.start()
        while not page.paths:
            time.sleep(0.01)

        started = time.monotonic()
        status, body = fetch(server.port, "/healthz")
        metrics_status, _ = fetch(server.port, "/metrics")
        took = time.monotonic() - started

        page.release.set()
        slow.join(5)
    finally:
        page.release.set()
        server.stop()

    assert (status, json.loads(body)) == (200, {"status": "alive"})
    assert metrics_status == 200
    assert took < 2
    assert answers == [(200, b"page")]
    assert page.paths == ["/jobs"]


def test_the_page_is_off_unless_enabled() -> None:
    assert Settings().web_enabled is False
    assert Settings(web_enabled=True).web_enabled is True
