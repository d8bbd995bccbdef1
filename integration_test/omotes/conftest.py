"""Fixtures for the OMOTES drop-in tests (client side and worker side).

The OMOTES peers are the unmodified OMOTES SDK in a venv of its own
(``.venv-omotes``, made by ``bash ci/setup.sh``), run as subprocesses: Segue's
own test process never imports an OMOTES package. Without that venv, or
without the ``omotes`` / ``omotes_celery`` vhosts (``bash ci/services.sh``),
the tests FAIL saying so; they never skip.

Fixtures:

- ``omotes_python`` (session): the OMOTES venv's python, checked to import
  ``omotes_sdk``.
- ``omotes_amqp_url`` / ``omotes_celery_amqp_url`` (session): the test broker
  (``amqp_url``) on vhost ``omotes`` / ``omotes_celery``, checked reachable
  (``SEGUE_TEST_OMOTES_AMQP_URL`` / ``SEGUE_TEST_OMOTES_CELERY_AMQP_URL`` override).
- ``omotes_names`` (function): a Segue namespace of the test's own; its queues
  and exchanges are deleted afterwards (also the step queues that
  :func:`omotes_service` configured).
- ``omotes_service`` (function): ``async with omotes_service(workflows) as running``
  runs Segue's orchestrator in this event loop with ``omotes_enabled`` and the
  legacy OMOTES workflow file ``workflows`` (a list, written to a temporary
  file); ``running.settings`` / ``running.names`` / ``running.catalog``. The
  OMOTES vhost's shared queues are emptied first, so a test sees no message
  of another.
- ``omotes_client`` (function): ``await omotes_client(plan)`` runs
  ``omotes_client_driver.py`` with a plan (see that file) and returns the JSON
  lines it printed; the broker settings are filled in. Afterwards the per-job
  queues (``jobs.<uuid>.progress|status|result``) of every job its clients
  submitted are deleted: the SDK leaves some behind (a job not waited for, a
  disconnect, a submission it refused after declaring them), and hundreds of
  them slow RabbitMQ down.
- :func:`segue_worker`: a Segue SDK worker for the test's namespace while a
  block runs (a stand-in for OMOTES Celery workers when testing the client side).

Worker side (OMOTES Celery workers behind Segue's Celery bridge):

- ``celery_names`` (function): task types (``<namespace>_success|error|crash|sleep|large``)
  and worker event queues of the test's own on vhost ``omotes_celery``; deleted
  afterwards.
- ``omotes_worker`` (function): ``async with omotes_worker() as worker`` runs
  ``omotes_test_worker.py`` (the unmodified SDK Celery worker) serving those task
  types until the block ends (then SIGKILLed with its pool); ``worker.log_text()``,
  ``await worker.wait_for_log(text)``, ``await worker.kill()``.
- ``bridge_service`` (function): ``async with bridge_service(workflow_file, **settings)
  as running`` runs the orchestrator with ``omotes_enabled`` on the test's event
  queues, and a Celery bridge and a gateway beside it unless ``segue serve`` runs
  its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity

from e2e.conftest import running_service
from segue.omotes.bridge import CeleryBridge, omotes_task_types
from segue.omotes.gateway import OmotesGateway
from segue.protocol.names import Names
from segue.protocol.topology import exchanges
from segue.service.app import utc_now
from segue.settings import Settings
from segue.worker import StepHandler, Worker
from segue.workflows.loader import Catalog, load_workflows

REPO = Path(__file__).resolve().parents[2]
OMOTES_PYTHON = REPO / ".venv-omotes" / "bin" / "python"
CLIENT_DRIVER = Path(__file__).resolve().parent / "omotes_client_driver.py"
OMOTES_AMQP_URL_ENV = "SEGUE_TEST_OMOTES_AMQP_URL"
OMOTES_CELERY_AMQP_URL_ENV = "SEGUE_TEST_OMOTES_CELERY_AMQP_URL"
SETUP_HINT = "run `bash ci/setup.sh` (it creates .venv-omotes with omotes-sdk-python 4.x)"
OMOTES_SHARED_QUEUES = ("job_submissions", "job_deletions")
"""Queues of the OMOTES vhost every test shares (their names are the SDK's)."""
CLIENT_TIMEOUT_S = 120.0
NO_CELERY_TASK_TYPE = "no_celery_task_type"
"""A task type no workflow has: what :func:`omotes_service` gives the Celery bridge to
serve, so that it leaves the step queues to the Segue SDK workers of the test."""


@pytest.fixture(scope="session")
def omotes_python() -> Path:
    """The python of the OMOTES venv, which can import ``omotes_sdk``."""
    if not OMOTES_PYTHON.is_file():
        pytest.fail(f"{OMOTES_PYTHON} does not exist: {SETUP_HINT}", pytrace=False)
    probe = subprocess.run(
        [str(OMOTES_PYTHON), "-c", "import omotes_sdk.omotes_interface"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            f"{OMOTES_PYTHON} cannot import omotes_sdk ({probe.stderr.strip()[-500:]}): "
            f"{SETUP_HINT}",
            pytrace=False,
        )
    return OMOTES_PYTHON


def vhost_url(amqp_url: str, vhost: str) -> str:
    """``amqp_url`` on virtual host ``vhost``."""
    parts = urlsplit(amqp_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{vhost}", parts.query, parts.fragment))


def _reachable_vhost(url: str) -> str:
    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ vhost at {url} is not usable ({exc!r}): run `bash ci/services.sh` "
            "(it creates the vhosts omotes and omotes_celery for guest)",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def omotes_amqp_url(amqp_url: str) -> str:
    """The broker on vhost ``omotes`` (OMOTES clients <-> Segue), checked reachable."""
    return _reachable_vhost(os.environ.get(OMOTES_AMQP_URL_ENV) or vhost_url(amqp_url, "omotes"))


@pytest.fixture(scope="session")
def omotes_celery_amqp_url(amqp_url: str) -> str:
    """The broker on vhost ``omotes_celery`` (Segue <-> OMOTES Celery workers)."""
    url = os.environ.get(OMOTES_CELERY_AMQP_URL_ENV) or vhost_url(amqp_url, "omotes_celery")
    return _reachable_vhost(url)


def rabbitmq_config(url: str) -> dict[str, Any]:
    """The OMOTES SDK's ``RabbitMQConfig`` fields for ``url``."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "localhost",
        "port": parts.port or 5672,
        "username": unquote(parts.username or "guest"),
        "password": unquote(parts.password or "guest"),
        "virtual_host": unquote(parts.path.lstrip("/")) or "/",
    }


# --- the orchestrator -------------------------------------------------------------------


@dataclass
class _Cleanup:
    """What a test's namespace left on the broker."""

    names: Names
    step_queues: set[str]


@pytest.fixture
def omotes_namespace(amqp_url: str) -> Iterator[_Cleanup]:
    """A namespace of this test's own, and what to delete of it afterwards."""
    cleanup = _Cleanup(Names(f"t{uuid4().hex[:12]}"), set())
    try:
        yield cleanup
    finally:
        asyncio.run(_delete_namespace(amqp_url, cleanup))


@pytest.fixture
def omotes_names(omotes_namespace: _Cleanup) -> Names:
    """A namespace of this test's own; its queues and exchanges are deleted afterwards."""
    return omotes_namespace.names


async def _delete_namespace(amqp_url: str, cleanup: _Cleanup) -> None:
    names = cleanup.names
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        queues = [names.commands_queue, names.events_queue, names.dead_queue]
        queues += [f"{names.namespace}.omotes.updates"]
        queues += [names.task_queue(queue) for queue in cleanup.step_queues]
        for name in queues:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        for spec in exchanges(names):
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(spec.name)


async def reset_omotes_vhost(omotes_amqp_url: str) -> None:
    """Delete the shared OMOTES queues (with whatever another test left in them)."""
    connection = await aio_pika.connect(omotes_amqp_url)
    async with connection:
        for name in OMOTES_SHARED_QUEUES:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)


async def consumers_of(amqp_url: str, queue: str) -> int:
    """How many consumers ``queue`` has (0 when it does not exist)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except ChannelNotFoundEntity:
            return 0
        return int(declared.declaration_result.consumer_count or 0)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RunningOmotes:
    """An orchestrator serving OMOTES clients, as a test sees it."""

    settings: Settings
    names: Names
    catalog: Catalog
    gateway: OmotesGateway | None
    """The gateway this fixture started itself (None: ``segue serve`` runs its own)."""


OmotesService = Callable[..., contextlib.AbstractAsyncContextManager[RunningOmotes]]


def _omotes_settings(config: Path, workflow_file: Any, **fields: Any) -> tuple[Settings, Catalog]:
    """Write ``workflow_file`` to ``config``; settings of an orchestrator with OMOTES
    enabled that runs it, quick timers and a free HTTP port (``fields`` add to or
    override them), and the workflows as loaded."""
    config.write_text(json.dumps(workflow_file, indent=2), encoding="utf-8")
    settings = Settings(
        **{
            "workflow_config": config,
            "migrate_on_start": False,
            "sweep_interval_s": 0.2,
            "relay_interval_s": 0.5,
            "relay_grace_s": 1.0,
            "http_host": "127.0.0.1",
            "http_port": free_port(),
            "omotes_enabled": True,
            **fields,
        }
    )
    return settings, load_workflows(config)


@pytest.fixture
def omotes_service(
    amqp_url: str,
    omotes_amqp_url: str,
    omotes_celery_amqp_url: str,
    database_url: str,
    omotes_namespace: _Cleanup,
    tmp_path: Path,
) -> OmotesService:
    """``async with omotes_service(workflows, **settings) as running``: see the module."""

    @contextlib.asynccontextmanager
    async def run(
        workflows: Sequence[dict[str, Any]], **overrides: Any
    ) -> AsyncIterator[RunningOmotes]:
        omotes_names = omotes_namespace.names
        settings, catalog = _omotes_settings(
            tmp_path / f"workflow_config_{uuid4().hex[:8]}.json",
            list(workflows),
            amqp_url=amqp_url,
            database_url=database_url,
            namespace=omotes_names.namespace,
            omotes_amqp_url=omotes_amqp_url,
            omotes_celery_amqp_url=omotes_celery_amqp_url,
            # Segue SDK workers stand in for the Celery workers here: once `segue
            # serve` runs the Celery bridge, it must not take their step queues.
            omotes_task_types=NO_CELERY_TASK_TYPE,
            **overrides,
        )
        omotes_namespace.step_queues |= catalog.queues() | {NO_CELERY_TASK_TYPE}
        await reset_omotes_vhost(omotes_amqp_url)
        async with running_service(settings):
            gateway = None
            if await consumers_of(omotes_amqp_url, settings.omotes_submissions_queue) == 0:
                # `segue serve` does not run the gateway (yet): run one beside it.
                gateway = OmotesGateway(settings, omotes_names, catalog, utc_now)
                await gateway.start()
            try:
                yield RunningOmotes(settings, omotes_names, catalog, gateway)
            finally:
                if gateway is not None:
                    await gateway.stop()

    return run


@contextlib.asynccontextmanager
async def segue_worker(
    amqp_url: str, names: Names, handlers: Sequence[StepHandler], concurrency: int = 4
) -> AsyncIterator[Worker]:
    """A Segue SDK worker serving ``handlers`` in namespace ``names`` while the block runs."""
    worker = Worker(
        handlers=handlers,
        amqp_url=amqp_url,
        namespace=names.namespace,
        concurrency=concurrency,
        progress_interval_s=0.05,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 40)


# --- the OMOTES client ------------------------------------------------------------------

OmotesClient = Callable[..., Awaitable[list[dict[str, Any]]]]
SUBMITTING = re.compile(
    r"Submitting job ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
"""What the SDK logs (``omotes_interface.py``, ``submit_job``) once it made a job's uuid,
before it declares the job's queues."""
JOB_QUEUE_KINDS = ("progress", "status", "result")


@pytest.fixture
def omotes_client(omotes_python: Path, omotes_amqp_url: str) -> Iterator[OmotesClient]:
    """``await omotes_client(plan)``: the unmodified OMOTES client runs ``plan``; the
    per-job queues of its jobs are deleted after the test."""
    job_ids: set[str] = set()

    async def run(
        plan: dict[str, Any], timeout_s: float = CLIENT_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        full = {"rabbitmq": rabbitmq_config(omotes_amqp_url), "client_id": uuid4().hex, **plan}
        return await run_driver(omotes_python, CLIENT_DRIVER, full, timeout_s, job_ids)

    yield run
    asyncio.run(delete_job_queues(omotes_amqp_url, job_ids))


async def delete_job_queues(omotes_amqp_url: str, job_ids: Iterable[str]) -> None:
    """Delete the OMOTES per-job queues of ``job_ids`` (those that exist)."""
    connection = await aio_pika.connect(omotes_amqp_url)
    async with connection:
        channel = await connection.channel()
        for job_id in sorted(job_ids):
            for kind in JOB_QUEUE_KINDS:
                try:
                    await channel.queue_delete(f"jobs.{job_id}.{kind}")
                except Exception:  # the channel is closed on an error: take a new one
                    channel = await connection.channel()


async def run_driver(
    python: Path,
    driver: Path,
    plan: dict[str, Any],
    timeout_s: float,
    job_ids: set[str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``driver`` with ``plan`` in the OMOTES venv; the JSON lines it printed.

    Adds to ``job_ids`` every job the client made (as the SDK logged it, or as the
    driver named it), also when the test then fails. Fails the test, with the
    driver's stderr, when it does not finish in time or prints something that
    is not JSON.
    """
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(driver),
        json.dumps(plan),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    timed_out = False
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        timed_out = True
        process.kill()
        stdout, stderr = await process.communicate()
    lines = []
    for line in stdout.decode().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            print(line, file=sys.stderr)  # something the SDK printed: shown if the test fails
    if job_ids is not None:
        job_ids.update(SUBMITTING.findall(stdout.decode() + stderr.decode()))
        job_ids.update(str(line["job_id"]) for line in lines if line.get("job_id"))
    if timed_out:
        pytest.fail(
            f"{driver.name} did not finish in {timeout_s} s; stdout:\n{stdout.decode()[-3000:]}"
            f"\nstderr:\n{stderr.decode()[-3000:]}",
            pytrace=False,
        )
    if not lines or lines[-1].get("event") != "done":
        pytest.fail(
            f"{driver.name} ended without 'done' (exit {process.returncode}); "
            f"stderr:\n{stderr.decode()[-3000:]}",
            pytrace=False,
        )
    return lines


# --- the worker side: OMOTES Celery workers behind the Celery bridge --------------------

OMOTES_TEST_WORKER = Path(__file__).resolve().parent / "omotes_test_worker.py"
WORKER_READY_S = 60.0
CELERY_KINDS = ("success", "error", "crash", "sleep", "large")
"""What the test worker's task types do (see omotes_test_worker.py)."""


@dataclass(frozen=True)
class CeleryNames:
    """A test's own OMOTES task types and worker event queues (vhost ``omotes_celery``)."""

    prefix: str

    def task_type(self, kind: str) -> str:
        """The test's task type doing ``kind`` (one of :data:`CELERY_KINDS`)."""
        return f"{self.prefix}_{kind}"

    @property
    def task_types(self) -> list[str]:
        """One task type of each kind."""
        return [self.task_type(kind) for kind in CELERY_KINDS]

    @property
    def progress_queue(self) -> str:
        """The test's ``TASK_PROGRESS_QUEUE_NAME``."""
        return f"omotes_task_progress_events.{self.prefix}"

    @property
    def result_queue(self) -> str:
        """The test's ``TASK_RESULT_QUEUE_NAME``."""
        return f"omotes_task_result_events.{self.prefix}"


@pytest.fixture
def celery_names(omotes_names: Names, omotes_celery_amqp_url: str) -> Iterator[CeleryNames]:
    """Task types and event queues of this test's own; deleted from the broker afterwards."""
    names = CeleryNames(omotes_names.namespace)
    yield names
    asyncio.run(_delete_celery_entities(omotes_celery_amqp_url, names))


async def _delete_celery_entities(url: str, names: CeleryNames) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        for queue in [*names.task_types, names.progress_queue, names.result_queue]:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in names.task_types:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)


@dataclass
class CeleryWorker:
    """An unmodified OMOTES SDK Celery worker process (and its pool), logging to ``log``."""

    process: asyncio.subprocess.Process
    log: Path

    def log_text(self) -> str:
        """What the worker logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def wait_for_log(self, text: str, timeout_s: float = 30.0) -> None:
        """Wait until the worker logged ``text``; fail the test showing the log if not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while text not in self.log_text():
            if self.process.returncode is not None:
                pytest.fail(f"the OMOTES worker exited:\n{self.log_text()[-4000:]}", pytrace=False)
            if loop.time() > deadline:
                pytest.fail(
                    f"the OMOTES worker did not log {text!r} within {timeout_s} s:\n"
                    f"{self.log_text()[-4000:]}",
                    pytrace=False,
                )
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (no warm shutdown)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 30)


CeleryWorkers = Callable[[], contextlib.AbstractAsyncContextManager[CeleryWorker]]


@pytest.fixture
def omotes_worker(
    omotes_python: Path, omotes_celery_amqp_url: str, celery_names: CeleryNames, tmp_path: Path
) -> CeleryWorkers:
    """``async with omotes_worker() as worker``: omotes_test_worker.py serving every
    task type of :class:`CeleryNames`, ready (it logged ``ready.``); killed at the end."""
    config = rabbitmq_config(omotes_celery_amqp_url)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "RABBITMQ_HOSTNAME": config["host"],
        "RABBITMQ_PORT": str(config["port"]),
        "RABBITMQ_USERNAME": config["username"],
        "RABBITMQ_PASSWORD": config["password"],
        "RABBITMQ_VIRTUALHOST": config["virtual_host"],
        "TASK_PROGRESS_QUEUE_NAME": celery_names.progress_queue,
        "TASK_RESULT_QUEUE_NAME": celery_names.result_queue,
        "LOG_LEVEL": "INFO",
        "OMOTES_TEST_TASK_TYPES": ",".join(celery_names.task_types),
    }

    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[CeleryWorker]:
        log = tmp_path / f"omotes_worker_{uuid4().hex[:8]}.log"
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                str(omotes_python),
                str(OMOTES_TEST_WORKER),
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
                start_new_session=True,  # its own process group: killed with its pool
            )
        worker = CeleryWorker(process, log)
        try:
            await worker.wait_for_log(" ready.", WORKER_READY_S)
            yield worker
        finally:
            await worker.kill()

    return run


@dataclass(frozen=True)
class RunningBridge:
    """An orchestrator whose OMOTES task types are served by the Celery bridge."""

    settings: Settings
    names: Names
    bridge: CeleryBridge | None
    """The bridge this fixture started itself (None: ``segue serve`` runs its own)."""


BridgeService = Callable[..., contextlib.AbstractAsyncContextManager[RunningBridge]]


@pytest.fixture
def bridge_service(
    amqp_url: str,
    omotes_amqp_url: str,
    omotes_celery_amqp_url: str,
    database_url: str,
    omotes_namespace: _Cleanup,
    celery_names: CeleryNames,
    tmp_path: Path,
) -> BridgeService:
    """``async with bridge_service(workflow_file, **settings) as running``: the
    orchestrator with ``omotes_enabled`` and the workflow file ``workflow_file`` (a
    legacy list or a format-1 object), its OMOTES task types served by the Celery
    bridge, on the test's own worker event queues, and OMOTES clients served by
    the gateway (each started beside it unless ``segue serve`` runs its own)."""

    @contextlib.asynccontextmanager
    async def run(workflow_file: Any, **overrides: Any) -> AsyncIterator[RunningBridge]:
        names = omotes_namespace.names
        settings, catalog = _omotes_settings(
            tmp_path / f"workflow_config_{uuid4().hex[:8]}.json",
            workflow_file,
            amqp_url=amqp_url,
            database_url=database_url,
            namespace=names.namespace,
            omotes_amqp_url=omotes_amqp_url,
            omotes_celery_amqp_url=omotes_celery_amqp_url,
            omotes_progress_queue=celery_names.progress_queue,
            omotes_result_queue=celery_names.result_queue,
            **overrides,
        )
        omotes_namespace.step_queues |= catalog.queues()
        task_types = omotes_task_types(settings.omotes_task_types, catalog)
        await reset_omotes_vhost(omotes_amqp_url)
        async with running_service(settings), contextlib.AsyncExitStack() as beside:
            bridge = None
            served = [await consumers_of(amqp_url, names.task_queue(t)) for t in task_types]
            if not any(served):
                # `segue serve` does not run the bridge (yet): run one beside it.
                bridge = CeleryBridge(settings, names, catalog, utc_now, inspect_window_s=0.5)
                await bridge.start()
                beside.push_async_callback(bridge.stop)
            if await consumers_of(omotes_amqp_url, settings.omotes_submissions_queue) == 0:
                gateway = OmotesGateway(settings, names, catalog, utc_now)  # likewise
                await gateway.start()
                beside.push_async_callback(gateway.stop)
            yield RunningBridge(settings, names, bridge)

    return run
