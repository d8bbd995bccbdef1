"""Liveness, readiness and metrics over HTTP: ``/healthz``, ``/readyz``, ``/metrics``.

A monitor task probes the database and the broker every few seconds and keeps
the latest verdict; a small WSGI server from the standard library (in daemon
threads, one per request, so neither a busy event loop nor a slow page delays a
probe) serves it, together with the Prometheus exposition of
:class:`~segue.service.metrics.Metrics` and, when enabled, the read-only jobs
web page (:mod:`segue.web`), which answers every other path.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import make_wsgi_app

from segue.errors import describe
from segue.service.metrics import Metrics
from segue.store.repository import Store

PROBE_TIMEOUT_S = 3.0
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class Readiness:
    """The latest probe results; ``problems`` is empty when ready."""

    problems: dict[str, str] = field(default_factory=lambda: {"startup": "not probed yet"})
    probes: int = 0

    @property
    def ready(self) -> bool:
        """Whether the database and the broker answered the last probe."""
        return not self.problems


class HealthMonitor:
    """Probes the database and the broker and records what it found."""

    def __init__(
        self,
        store: Store,
        connection: AbstractRobustConnection,
        metrics: Metrics,
        interval_s: float = 2.0,
    ) -> None:
        self._store = store
        self._connection = connection
        self._metrics = metrics
        self._interval_s = interval_s
        self.readiness = Readiness()
        self._log = structlog.get_logger("segue.health")

    async def run(self) -> None:
        """Probe forever."""
        while True:
            await self.probe()
            await asyncio.sleep(self._interval_s)

    async def probe(self) -> Readiness:
        """Probe once and publish the verdict (logged when it changes)."""
        problems: dict[str, str] = {}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await self._store.ping()
                self._metrics.outbox_rows.set(await self._store.outbox_size())
        except Exception as exc:
            problems["database"] = describe(exc)[:300]
        if self._connection.is_closed or not self._connection.connected.is_set():
            problems["broker"] = "connection to RabbitMQ is closed (reconnecting)"
        if problems.keys() != self.readiness.problems.keys():
            if problems:
                self._log.warning("service_not_ready", problems=problems)
            else:
                self._log.info("service_ready_again")
        self.readiness = Readiness(problems, self.readiness.probes + 1)
        self._metrics.ready.set(0 if problems else 1)
        return self.readiness


class QuietHandler(WSGIRequestHandler):
    """Request handler that does not write a line to stderr per request."""

    def log_message(self, format: str, *args: Any) -> None:
        """Probes are frequent; they are not logged."""


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """Answers each request in a daemon thread of its own."""

    daemon_threads = True


class HealthServer:
    """Serves the monitor's verdict and the metrics (and ``web``, if given, on every
    other path) from daemon threads."""

    def __init__(
        self,
        monitor: HealthMonitor,
        metrics: Metrics,
        host: str,
        port: int,
        web: WsgiApp | None = None,
    ) -> None:
        self._monitor = monitor
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._web = web
        self._server: WSGIServer = make_server(
            host, port, self._app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="segue-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on (useful when 0 asked for any free port)."""
        return int(self._server.server_port)

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body: Iterable[bytes] = self._metrics_app(environ, start_response)
            return body
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "alive"})
        if path == "/readyz":
            readiness = self._monitor.readiness
            if readiness.ready:
                return _json(start_response, "200 OK", {"status": "ready"})
            payload = {"status": "not ready", "problems": readiness.problems}
            return _json(start_response, "503 Service Unavailable", payload)
        if self._web is not None:
            return self._web(environ, start_response)
        return _json(start_response, "404 Not Found", {"error": f"no such path {path}"})


def _json(start_response: StartResponse, status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
