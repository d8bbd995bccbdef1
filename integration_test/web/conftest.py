"""Fixtures for the web page tests: a real ``segue serve`` with the web page on, a
real demo worker (``segue worker run segue.demo:worker``), jobs submitted with
the real client SDK, and a real headless Chromium driven by Selenium.

The browser is Debian's ``chromium`` with its ``chromium-driver``
(``SEGUE_TEST_CHROMIUM`` / ``SEGUE_TEST_CHROMEDRIVER`` name others); when they
are missing the tests FAIL saying how to install them (``ci/setup.sh`` does).
One orchestrator, worker, database and namespace serve the whole module (each
test submits the jobs it looks at, and finds them by id).

With ``SEGUE_WEB_SCREENSHOTS=DIR`` the tests save the screenshots
docs/operator.md shows (``web-jobs.png``, ``web-job.png``) into DIR.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from e2e.conftest import DEMO_CONFIG, REPO, delete_namespace, free_port
from segue.client import SegueClient
from segue.protocol.messages import JobFinished
from segue.protocol.names import Names
from segue.store.urls import asyncpg_dsn, with_database

READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
WINDOW = (1400, 1000)
SCREENSHOTS_ENV = "SEGUE_WEB_SCREENSHOTS"
INSTALL_HINT = (
    "install Debian's chromium and chromium-driver (`apt-get install -y chromium "
    "chromium-driver`, as ci/setup.sh does) or set SEGUE_TEST_CHROMIUM and "
    "SEGUE_TEST_CHROMEDRIVER to a Chromium and its matching driver"
)


@dataclass(frozen=True)
class WebStack:
    """What the tests talk to: the page's base URL and the broker namespace."""

    base_url: str
    amqp_url: str
    names: Names
    logs: Path

    def url(self, path: str) -> str:
        """An absolute URL of the page."""
        return f"{self.base_url}{path}"


@dataclass(frozen=True)
class Submission:
    """A job to submit: workflow, params and reference."""

    workflow: str
    params: dict[str, Any]
    reference: str | None = None


def browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver; FAILS the test, saying how to install them, if missing."""
    chromium = os.environ.get("SEGUE_TEST_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("SEGUE_TEST_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        missing = "chromium" if not chromium else "chromedriver"
        pytest.fail(f"{missing} not found: {INSTALL_HINT}", pytrace=False)
    return chromium, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """A headless Chromium (a fresh profile; no network but this machine's)."""
    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console, CSP reports
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def web_stack(
    amqp_url: str,
    postgres_url: str,
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebStack]:
    """``segue serve`` with the web page on, and a demo worker, on a database and a
    namespace of this module's own; all stopped and deleted afterwards."""
    names = Names(f"t{uuid4().hex[:12]}")
    database = f"segue_web_{uuid4().hex[:12]}"
    logs = tmp_path_factory.mktemp("web-logs")
    asyncio.run(admin(postgres_url, f'CREATE DATABASE "{database}" TEMPLATE "{migrated_template}"'))
    database_url = with_database(postgres_url, database).render_as_string(hide_password=False)
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(spawn("serve", serve_env(amqp_url, database_url, names, port), logs))
        processes.append(spawn("worker", worker_env(amqp_url, names), logs))
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, processes[0], logs / "serve.log")
        yield WebStack(base_url, amqp_url, names, logs)
    finally:
        for process in processes:
            stop(process)
        asyncio.run(delete_namespace(amqp_url, names))
        asyncio.run(admin(postgres_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def serve_env(amqp_url: str, database_url: str, names: Names, port: int) -> dict[str, str]:
    """Environment of ``segue serve``: the web page on, fast timers, this test's names."""
    return {
        "SEGUE_AMQP_URL": amqp_url,
        "SEGUE_DATABASE_URL": database_url,
        "SEGUE_NAMESPACE": names.namespace,
        "SEGUE_WORKFLOW_CONFIG": str(DEMO_CONFIG),
        "SEGUE_MIGRATE_ON_START": "false",
        "SEGUE_HTTP_HOST": "127.0.0.1",
        "SEGUE_HTTP_PORT": str(port),
        "SEGUE_WEB_ENABLED": "true",
        "SEGUE_SWEEP_INTERVAL_S": "0.2",
        "SEGUE_RELAY_INTERVAL_S": "0.5",
        "SEGUE_LOG_FORMAT": "json",
    }


def worker_env(amqp_url: str, names: Names) -> dict[str, str]:
    """Environment of the demo worker: four steps at a time."""
    return {
        "SEGUE_AMQP_URL": amqp_url,
        "SEGUE_NAMESPACE": names.namespace,
        "SEGUE_WORKER_CONCURRENCY": "4",
        "SEGUE_LOG_FORMAT": "json",
    }


def spawn(role: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """Run ``segue serve`` or ``segue worker run segue.demo:worker``, logging to a file."""
    argv = ["serve"] if role == "serve" else ["worker", "run", "segue.demo:worker"]
    with (logs / f"{role}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "segue", *argv],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``/readyz`` answers 200; fail with the log's end if it never does."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"segue serve did not become ready (exit {process.poll()}):\n{tail}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def admin(server_url: str, statement: str) -> None:
    """Run a statement (CREATE/DROP DATABASE) on the server's maintenance database."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def submit(stack: WebStack, *jobs: Submission, wait: bool = True) -> list[UUID]:
    """Submit jobs with the client SDK; with ``wait``, until every one has finished."""

    async def run() -> list[UUID]:
        async with SegueClient(
            stack.amqp_url, namespace=stack.names.namespace, request_timeout_s=20
        ) as client:
            handles = [
                await client.submit(job.workflow, job.params, reference=job.reference)
                for job in jobs
            ]
            for handle in handles:
                await handle.accepted(timeout=30)
            if wait:
                results: list[JobFinished] = [await h.result(timeout=90) for h in handles]
                assert all(
                    result.job_id == h.job_id for result, h in zip(results, handles, strict=True)
                )
            return [handle.job_id for handle in handles]

    return asyncio.run(run())


def console_errors(browser: webdriver.Chrome) -> list[str]:
    """Errors the page logged since the last call (scripts, refused resources, CSP)."""
    read_log: Callable[[str], list[dict[str, Any]]] = browser.get_log  # untyped upstream
    entries = read_log("browser")
    return [str(entry["message"]) for entry in entries if entry["level"] == "SEVERE"]


def screenshot(browser: webdriver.Chrome, name: str, height: int | None = None) -> None:
    """Save a screenshot for the docs when ``SEGUE_WEB_SCREENSHOTS`` names a directory."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return
    if height is not None:
        browser.set_window_size(WINDOW[0], height)
    Path(folder).mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(Path(folder) / name))
    browser.set_window_size(*WINDOW)
