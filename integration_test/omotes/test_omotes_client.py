"""The OMOTES drop-in, client side: the unmodified OMOTES SDK client on Segue.

Each test runs Segue's orchestrator (with the OMOTES gateway) in this event loop
on a legacy OMOTES workflow file, and the unmodified ``OmotesInterface`` in the
OMOTES venv as a subprocess (``omotes_client_driver.py``). Until the Celery
bridge exists, the OMOTES task queues are served by Segue SDK workers that
return the bridge's output convention, and a hand-played "bridge" reports a
failed OMOTES task the way the bridge will (``omotes_task_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from segue.broker.boundary import REASON_HEADER, SOURCE_QUEUE_HEADER
from segue.omotes.gateway import OmotesGateway
from segue.omotes.store import OmotesInputs
from segue.omotes.translate import DELETE_REASON, TASK_ERROR_KIND
from segue.omotes.wire.omotes_wire_pb2 import (
    AvailableWorkflows,
    JobPriority,
    JobResult,
    JobSubmission,
)
from segue.protocol.codec import TASK_ADAPTER, decode, encode
from segue.protocol.messages import ErrorInfo, JobStatus, StepFailed, StepStarted
from segue.protocol.names import Names
from segue.service.app import utc_now
from segue.store.repository import Store
from segue.worker import StepContext, StepHandler, step_handler
from segue.workflows.loader import parse_workflows

from .conftest import OmotesClient, OmotesService, RunningOmotes, segue_worker

SIMULATE = "omotes_simulate"
FAIL = "omotes_fail"
SLEEP = "omotes_sleep"
QUICK = "omotes_quick"

WORKFLOWS: list[dict[str, Any]] = [
    {
        "workflow_type_name": SIMULATE,
        "workflow_type_description_name": "Simulate (test)",
        "workflow_parameters": [
            {
                "parameter_type": "integer",
                "key_name": "steps",
                "title": "Steps",
                "description": "How many steps",
                "default": 2,
                "minimum": 1,
                "maximum": 10,
            },
            {
                "parameter_type": "float",
                "key_name": "ratio",
                "default": 0.5,
                "minimum": 0.0,
                "maximum": 1.0,
            },
            {"parameter_type": "boolean", "key_name": "verbose", "default": False},
            {
                "parameter_type": "string",
                "key_name": "mode",
                "default": "fast",
                "enum_options": [
                    {"key_name": "fast", "display_name": "Fast"},
                    {"key_name": "slow", "display_name": "Slow and exact"},
                ],
            },
            # As OMOTES files write datetimes: without an offset (read as UTC).
            {
                "parameter_type": "datetime",
                "key_name": "start_time",
                "default": "2030-01-01T00:00:00",
            },
            {
                "parameter_type": "datetime",
                "key_name": "end_time",
                "default": "2030-12-31T23:00:00",
                "constraints": [{"other_key_name": "start_time", "relation": "greater"}],
            },
            {
                "parameter_type": "duration",
                "key_name": "time_step",
                "default": 3600,
                "minimum": 60,
                "maximum": 86400,
            },
        ],
    },
    {"workflow_type_name": FAIL, "workflow_type_description_name": "Fails (test)"},
    {
        "workflow_type_name": SLEEP,
        "workflow_type_description_name": "Sleeps (test)",
        "workflow_parameters": [
            {"parameter_type": "float", "key_name": "seconds", "default": 30.0},
        ],
    },
    {"workflow_type_name": QUICK, "workflow_type_description_name": "Quick (test)"},
]

SIMULATE_PARAMS = {
    "steps": 7,
    "ratio": 0.25,
    "verbose": True,
    "mode": "slow",
    "start_time": {"$datetime": "2030-06-01T00:00:00+00:00"},
    "end_time": {"$datetime": "2030-06-02T12:00:00+02:00"},
    "time_step": {"$timedelta": 900},
}
TASK_ESDL_MESSAGES = [
    {"technical_message": "pipe too thin", "severity": "WARNING", "esdl_object_id": "pipe-1"},
    {"technical_message": "no solution", "severity": "ERROR", "esdl_object_id": None},
]


# --- workers ----------------------------------------------------------------------------


def handlers(inputs: OmotesInputs) -> list[StepHandler]:
    """Stand-ins for OMOTES workers: outputs in the Celery bridge's convention."""

    async def simulate(ctx: StepContext) -> dict[str, Any]:
        stored = await inputs.get(ctx.job_id)
        assert stored is not None, "the input ESDL is stored before the job is submitted"
        ctx.progress(0.5, "halfway")
        await asyncio.sleep(0.4)
        ctx.progress(1.0, "calculation finished")
        await asyncio.sleep(0.1)
        return {
            "output_esdl": f"{stored.esdl}<!-- {stored.job_reference} -->",
            "esdl_messages": [
                {"technical_message": "all fine", "severity": "INFO", "esdl_object_id": "a1"}
            ],
            "logs": json.dumps(ctx.params, sort_keys=True),
        }

    async def sleep(ctx: StepContext) -> dict[str, Any]:
        ctx.progress(0.1, "sleeping")
        await asyncio.sleep(float(ctx.params["seconds"]))
        return {"output_esdl": "<slept/>", "esdl_messages": []}

    def quick(ctx: StepContext) -> dict[str, Any]:
        return {"output_esdl": f"<quick job='{ctx.job_id}'/>", "esdl_messages": []}

    return [
        step_handler(SIMULATE, simulate),
        step_handler(SLEEP, sleep),
        step_handler(QUICK, quick),
    ]


@contextlib.asynccontextmanager
async def failing_tasks(amqp_url: str, names: Names, queue: str) -> AsyncIterator[None]:
    """Serve ``queue`` as the Celery bridge reports an OMOTES task that failed: the
    task's logs as the message, its ESDL messages as JSON details."""
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        tasks = await channel.declare_queue(names.task_queue(queue), passive=True)
        events = await channel.get_exchange(names.events_exchange)

        async def report(event: StepStarted | StepFailed) -> None:
            await events.publish(
                aio_pika.Message(encode(event), content_type="application/json"),
                routing_key=names.events_queue,
            )

        async def on_task(message: AbstractIncomingMessage) -> None:
            async with message.process():
                task = decode(TASK_ADAPTER, message.body)
                ids = {"job_id": task.job_id, "attempt_id": task.attempt_id}
                who = {"worker_id": "fake-bridge", "token": task.token, "sent_at": utc_now()}
                await report(StepStarted(**ids, **who))
                error = ErrorInfo(
                    kind=TASK_ERROR_KIND,
                    message="task logs: it broke",
                    step=task.step,
                    details=json.dumps({"esdl_messages": TASK_ESDL_MESSAGES}),
                )
                await report(StepFailed(**ids, **who, error=error, retryable=False))

        await tasks.consume(on_task)
        yield


@contextlib.asynccontextmanager
async def served(running: RunningOmotes, concurrency: int = 8) -> AsyncIterator[OmotesInputs]:
    """Workers for every test workflow while the block runs; yields the stored inputs."""
    settings, names = running.settings, running.names
    inputs = await OmotesInputs.connect(settings.database_url)
    try:
        async with (
            segue_worker(settings.amqp_url, names, handlers(inputs), concurrency),
            failing_tasks(settings.amqp_url, names, FAIL),
        ):
            yield inputs
    finally:
        await inputs.close()


# --- reading the client's report ----------------------------------------------------------


def of(lines: Sequence[dict[str, Any]], event: str, **match: Any) -> list[dict[str, Any]]:
    """The lines of ``event`` whose fields match."""
    return [
        line
        for line in lines
        if line["event"] == event and all(line.get(k) == v for k, v in match.items())
    ]


def only(lines: Sequence[dict[str, Any]], event: str, **match: Any) -> dict[str, Any]:
    """The one line of ``event`` (fails when there are none or several)."""
    found = of(lines, event, **match)
    assert len(found) == 1, f"expected one {event} {match}, got {found}; all: {lines}"
    return found[0]


def submitted_id(lines: Sequence[dict[str, Any]]) -> str:
    return str(only(lines, "submitted")["job_id"])


def assert_complete(lines: Sequence[dict[str, Any]]) -> None:
    assert not of(lines, "error"), lines
    assert lines[-1] == {**lines[-1], "event": "done", "complete": True}, lines


# --- tests ----------------------------------------------------------------------------------


async def test_client_starts_with_every_workflow_and_parameter_type(
    omotes_service: OmotesService, omotes_client: OmotesClient
) -> None:
    async with omotes_service(WORKFLOWS):
        lines = await omotes_client({"jobs": []})

    assert_complete(lines)
    workflows = {w["name"]: w for w in only(lines, "workflows")["workflows"]}
    assert set(workflows) == {SIMULATE, FAIL, SLEEP, QUICK}
    assert workflows[SIMULATE]["description"] == "Simulate (test)"
    params = {p["key_name"]: p for p in workflows[SIMULATE]["parameters"]}
    assert [p["key_name"] for p in workflows[SIMULATE]["parameters"]] == [
        "steps",
        "ratio",
        "verbose",
        "mode",
        "start_time",
        "end_time",
        "time_step",
    ]
    assert {k: p["type_name"] for k, p in params.items()} == {
        "steps": "integer",
        "ratio": "float",
        "verbose": "boolean",
        "mode": "string",
        "start_time": "datetime",
        "end_time": "datetime",
        "time_step": "duration",
    }
    steps = params["steps"]
    assert (steps["default"], steps["minimum"], steps["maximum"]) == (2, 1, 10)
    assert (steps["title"], steps["description"]) == ("Steps", "How many steps")
    assert (params["ratio"]["default"], params["ratio"]["maximum"]) == (0.5, 1.0)
    assert params["verbose"]["default"] is False
    assert params["mode"]["default"] == "fast"
    assert params["mode"]["enum_options"] == [
        {"key_name": "fast", "display_name": "Fast"},
        {"key_name": "slow", "display_name": "Slow and exact"},
    ]
    # As the OMOTES orchestrator sends them: naive, as written in the file.
    assert params["start_time"]["default"] == "2030-01-01T00:00:00"
    assert params["start_time"]["default_is_naive"] is True
    assert params["end_time"]["constraints"] == [
        {"other_key_name": "start_time", "relation": 0}  # GREATER
    ]
    time_step = params["time_step"]
    assert (time_step["default"], time_step["minimum"], time_step["maximum"]) == (3600, 60, 86400)
    assert workflows[QUICK]["parameters"] == []


async def test_job_runs_reports_progress_and_succeeds_with_output_esdl(
    omotes_service: OmotesService, omotes_client: OmotesClient, store: Store
) -> None:
    job = {
        "workflow": SIMULATE,
        "params": SIMULATE_PARAMS,
        "esdl": "<esdl id='input'/>",
        "reference": "my-reference",
        "priority": "HIGH",
    }
    async with omotes_service(WORKFLOWS) as running, served(running) as inputs:
        lines = await omotes_client({"jobs": [job]})
        job_id = UUID(submitted_id(lines))
        stored = await inputs.get(job_id)

    assert_complete(lines)
    assert [line["status"] for line in of(lines, "status")] == ["RUNNING"]
    progress = [(line["progress"], line["message"]) for line in of(lines, "progress")]
    assert (0.5, "halfway") in progress
    result = only(lines, "result")
    assert result["result_type"] == "SUCCEEDED"
    assert result["output_esdl"] == "<esdl id='input'/><!-- my-reference -->"
    assert result["esdl_messages"] == [
        {"technical_message": "all fine", "severity": "INFO", "esdl_object_id": "a1"}
    ]
    # What the worker got: the SDK's wire values as Segue reads them.
    assert json.loads(result["logs"]) == {
        "steps": 7,
        "ratio": 0.25,
        "verbose": True,
        "mode": "slow",
        "start_time": "2030-06-01T00:00:00+00:00",
        "end_time": "2030-06-02T10:00:00+00:00",
        "time_step": 900.0,
    }
    assert stored is not None
    assert (stored.esdl, stored.job_reference) == ("<esdl id='input'/>", "my-reference")
    view = await store.job_view(job_id)
    assert view is not None
    assert view.status is JobStatus.SUCCEEDED
    assert (view.workflow, view.priority, view.reference) == (SIMULATE, 6, "my-reference")


async def test_failed_task_reports_error_with_logs_and_esdl_messages(
    omotes_service: OmotesService, omotes_client: OmotesClient
) -> None:
    async with omotes_service(WORKFLOWS) as running, served(running):
        lines = await omotes_client({"jobs": [{"workflow": FAIL}]})

    assert_complete(lines)
    result = only(lines, "result")
    assert result["result_type"] == "ERROR"
    assert result["logs"] == "task logs: it broke"
    assert result["esdl_messages"] == TASK_ESDL_MESSAGES


async def test_deleting_a_running_job_sends_cancelled_status_then_result(
    omotes_service: OmotesService, omotes_client: OmotesClient, store: Store
) -> None:
    job = {"workflow": SLEEP, "params": {"seconds": 60.0}, "delete_on": "RUNNING"}
    async with omotes_service(WORKFLOWS) as running, served(running):
        started = time.monotonic()
        lines = await omotes_client({"jobs": [job]})
        elapsed = time.monotonic() - started

    assert_complete(lines)
    assert elapsed < 30, "the job was cancelled, not run to its end"
    events = [(line["event"], line.get("status") or line.get("result_type")) for line in lines]
    assert ("status", "RUNNING") in events
    cancelled, result = events.index(("status", "CANCELLED")), events.index(("result", "CANCELLED"))
    assert cancelled < result
    assert only(lines, "result")["logs"] == DELETE_REASON
    view = await store.job_view(UUID(submitted_id(lines)))
    assert view is not None
    assert view.status is JobStatus.CANCELLED


async def test_job_timeout_ends_in_timeout(
    omotes_service: OmotesService, omotes_client: OmotesClient
) -> None:
    job = {"workflow": SLEEP, "params": {"seconds": 60.0}, "timeout_s": 1.5}
    async with omotes_service(WORKFLOWS) as running, served(running):
        started = time.monotonic()
        lines = await omotes_client({"jobs": [job]})
        elapsed = time.monotonic() - started

    assert_complete(lines)
    assert elapsed < 30
    result = only(lines, "result")
    assert result["result_type"] == "TIMEOUT"
    assert "1.5" in result["logs"], "says the limit"


async def test_invalid_parameter_is_refused_with_the_reasons_in_logs(
    omotes_service: OmotesService, omotes_client: OmotesClient
) -> None:
    job = {"workflow": SIMULATE, "params": {**SIMULATE_PARAMS, "steps": 50, "mode": "turbo"}}
    async with omotes_service(WORKFLOWS) as running, served(running):
        lines = await omotes_client({"jobs": [job]})

    assert_complete(lines)
    assert not of(lines, "status"), "a refused job never runs"
    result = only(lines, "result")
    assert result["result_type"] == "ERROR"
    assert "params.steps" in result["logs"]
    assert "50" in result["logs"]
    assert "params.mode" in result["logs"]
    assert "'turbo'" in result["logs"]


async def test_many_clients_at_once_get_every_result_once(
    omotes_service: OmotesService, omotes_client: OmotesClient
) -> None:
    plan = {"jobs": [{"workflow": QUICK} for _ in range(20)], "wait_s": 90}
    async with omotes_service(WORKFLOWS) as running, served(running, concurrency=16):
        reports = await asyncio.gather(*(omotes_client(plan) for _ in range(5)))

    for lines in reports:
        assert_complete(lines)
        submitted = [line["job_id"] for line in of(lines, "submitted")]
        results = of(lines, "result")
        assert len(submitted) == 20
        assert sorted(line["job_id"] for line in results) == sorted(submitted), "once each"
        assert {line["result_type"] for line in results} == {"SUCCEEDED"}
        assert all(line["output_esdl"] == f"<quick job='{line['job_id']}'/>" for line in results)


async def test_restarted_client_reconnects_to_its_job_and_gets_the_result(
    omotes_service: OmotesService, omotes_client: OmotesClient
) -> None:
    async with omotes_service(WORKFLOWS) as running, served(running):
        first = await omotes_client(
            {"jobs": [{"workflow": SLEEP, "params": {"seconds": 1.0}}], "wait": False}
        )
        job_id = submitted_id(first)
        assert not of(first, "result")
        second = await omotes_client({"reconnect": [{"job_id": job_id, "workflow": SLEEP}]})

    assert_complete(second)
    only(second, "reconnected", job_id=job_id)
    result = only(second, "result", job_id=job_id)
    assert (result["result_type"], result["output_esdl"]) == ("SUCCEEDED", "<slept/>")


# --- the raw wire: what the SDK never sends -------------------------------------------------


@contextlib.asynccontextmanager
async def result_queue(url: str, job_id: UUID) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """The ``jobs.<uuid>.result`` queue as the OMOTES client declares it."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("omotes_exchange", durable=False)
        queue = await channel.declare_queue(f"jobs.{job_id}.result", durable=True)
        await queue.bind(exchange)
        try:
            yield queue
        finally:
            await queue.delete(if_unused=False, if_empty=False)


async def publish_raw(url: str, routing_key: str, body: bytes) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("omotes_exchange")
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)


async def results_in(
    queue: aio_pika.abc.AbstractQueue, count: int, quiet_s: float
) -> list[JobResult]:
    """Wait for ``count`` results in ``queue``, then ``quiet_s`` more for any extra one."""
    results: list[JobResult] = []
    deadline = time.monotonic() + 30
    quiet_until: float | None = None
    while time.monotonic() < (quiet_until or deadline):
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        result = JobResult()
        result.ParseFromString(message.body)
        results.append(result)
        if len(results) >= count and quiet_until is None:
            quiet_until = time.monotonic() + quiet_s
    return results


def submission(job_id: UUID, workflow: str, **fields: Any) -> bytes:
    message = JobSubmission(uuid=str(job_id), workflow_type=workflow, esdl="<raw/>", **fields)
    return message.SerializeToString()


async def dead_letters(amqp_url: str, names: Names, count: int) -> list[AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.dead_queue, passive=True)
        found: list[AbstractIncomingMessage] = []
        deadline = time.monotonic() + 20
        while len(found) < count and time.monotonic() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                found.append(message)
        return found


async def test_garbage_is_dead_lettered_and_redelivered_submissions_make_one_job(
    omotes_service: OmotesService, store: Store
) -> None:
    job_id, unknown_id = uuid4(), uuid4()
    async with omotes_service(WORKFLOWS) as running, served(running) as inputs:
        url = running.settings.omotes_amqp_url
        async with result_queue(url, job_id) as results, result_queue(url, unknown_id) as refused:
            await publish_raw(url, "job_submissions", b"\xff\xff not protobuf")
            await publish_raw(url, "job_submissions", submission(uuid4(), ""))
            await publish_raw(url, "job_deletions", b"\x0a\x05nope!")
            body = submission(job_id, QUICK, job_priority=JobPriority.LOW, timeout_ms=60_000)
            for _ in range(3):  # redelivered, or sent again
                await publish_raw(url, "job_submissions", body)
            await publish_raw(url, "job_submissions", submission(unknown_id, "no_such_type"))
            got = await results_in(results, 1, quiet_s=1.5)
            got_refused = await results_in(refused, 1, quiet_s=0.5)
        # The three above, and the SubmitJob the orchestrator refused (unknown workflow).
        dead = await dead_letters(running.settings.amqp_url, running.names, 4)
        jobs = await store.list_jobs()
        stored = await inputs.get(job_id)
        purged = await inputs.purge_orphans(datetime.now(UTC) + timedelta(days=1))
        kept, orphan = await inputs.get(job_id), await inputs.get(unknown_id)

    assert [r.result_type for r in got] == [JobResult.SUCCEEDED], "one job, one result"
    assert [job.job_id for job in jobs] == [job_id]
    assert (jobs[0].priority, jobs[0].params) == (2, {})
    assert [r.result_type for r in got_refused] == [JobResult.ERROR]
    assert "no_such_type" in got_refused[0].logs
    sources = sorted(str((m.headers or {})[SOURCE_QUEUE_HEADER]) for m in dead)
    commands = running.names.commands_queue
    assert sources == sorted([commands, "job_deletions", "job_submissions", "job_submissions"])
    assert all((m.headers or {})[REASON_HEADER] for m in dead)
    assert stored is not None
    assert (stored.esdl, stored.job_reference) == ("<raw/>", None)
    assert (purged, kept, orphan) == (1, stored, None), "only the refused job's inputs go"


async def test_a_reload_offers_the_new_workflows_to_every_client(
    omotes_service: OmotesService,
) -> None:
    extra = {"workflow_type_name": "omotes_new", "workflow_type_description_name": "New"}
    async with omotes_service(WORKFLOWS) as running:
        url = running.settings.omotes_amqp_url
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange("omotes_exchange", durable=False)
            listener = await channel.declare_queue(exclusive=True)
            await listener.bind(exchange, routing_key="available_workflows")
            gateway = OmotesGateway(running.settings, running.names, running.catalog, utc_now)
            await gateway.start()
            try:
                await until(lambda: offered(listener, "omotes_new"), expect=False)
                gateway.use_catalog(parse_workflows([*WORKFLOWS, extra]))
                await until(lambda: offered(listener, "omotes_new"))
            finally:
                await gateway.stop()


async def offered(queue: aio_pika.abc.AbstractQueue, workflow: str) -> bool:
    """Whether an ``AvailableWorkflows`` waiting in ``queue`` offers ``workflow``."""
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        offer = AvailableWorkflows()
        offer.ParseFromString(message.body)
        if workflow in {w.type_name for w in offer.workflows}:
            return True
    return False


async def until(check: Callable[[], Any], expect: bool = True, timeout_s: float = 10.0) -> None:
    """Wait until ``await check()`` is ``expect`` (for False: that it stays so a while)."""
    deadline = time.monotonic() + (timeout_s if expect else 1.0)
    while time.monotonic() < deadline:
        if await check() is True:
            assert expect, "offered before the reload"
            return
        await asyncio.sleep(0.1)
    assert not expect, f"not offered within {timeout_s} s"


async def test_gateway_declares_again_after_losing_the_broker(
    omotes_service: OmotesService, omotes_client: OmotesClient
) -> None:
    async with omotes_service(WORKFLOWS) as running, served(running):
        url = running.settings.omotes_amqp_url
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete("omotes_exchange")  # a broker restart drops it
        closing = await asyncio.create_subprocess_exec(
            *["rabbitmqctl", "close_all_connections", "-p", "omotes", "test: broker restart"],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(closing.communicate(), 60)
        assert closing.returncode == 0, stderr.decode()
        await asyncio.sleep(3)  # the gateway reconnects within a second or two
        lines = await omotes_client({"jobs": [{"workflow": QUICK}]})

    assert_complete(lines)
    assert only(lines, "result")["result_type"] == "SUCCEEDED"
