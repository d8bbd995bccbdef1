"""Unmodified OMOTES Celery workers (omotes-sdk-python 4.3.x) serve Segue jobs through the
Celery bridge: a result, an error with ESDL messages, a cancel that revokes the task.

Jobs are submitted with Segue's own client SDK; the input ESDL and job reference
an OMOTES client would have sent are stored in ``omotes_inputs`` first, as the
gateway does. The worker is ``omotes_test_worker.py``, run by the OMOTES venv.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.client import SegueClient
from segue.omotes.store import OmotesInput, OmotesInputs
from segue.protocol.messages import AttemptStatus, JobStatus, JobView

from .conftest import BridgeService, CeleryNames, CeleryWorkers

ESDL = """<?xml version='1.0' encoding='UTF-8'?>
<esdl:EnergySystem xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xmlns:esdl="http://www.tno.nl/esdl" name="segue_test" \
id="7f1f3c2e-0000-4000-8000-000000000001" version="1" esdlVersion="v2401">
  <instance xsi:type="esdl:Instance" id="7f1f3c2e-0000-4000-8000-000000000002" name="instance">
    <area xsi:type="esdl:Area" id="7f1f3c2e-0000-4000-8000-000000000003" name="area"/>
  </instance>
</esdl:EnergySystem>
"""
"""The smallest ESDL the SDK reads (it renames the energy system of a result)."""
RESULT_TIMEOUT_S = 60.0


def legacy_workflows(celery: CeleryNames) -> list[dict[str, Any]]:
    """A legacy OMOTES workflow file with one workflow type per test worker behaviour."""

    def workflow(kind: str, *parameters: dict[str, Any]) -> dict[str, Any]:
        return {
            "workflow_type_name": celery.task_type(kind),
            "workflow_type_description_name": f"The test worker's {kind}",
            "workflow_parameters": list(parameters),
        }

    return [
        workflow(
            "success",
            {"parameter_type": "float", "key_name": "factor"},
            {"parameter_type": "integer", "key_name": "steps"},
            {"parameter_type": "datetime", "key_name": "start"},
            {"parameter_type": "duration", "key_name": "horizon"},
            {"parameter_type": "string", "key_name": "mode"},
            {"parameter_type": "boolean", "key_name": "fast"},
        ),
        workflow("error"),
        workflow("crash"),
        workflow("sleep", {"parameter_type": "float", "key_name": "seconds", "default": 100.0}),
        workflow("large", {"parameter_type": "float", "key_name": "megabytes", "default": 4.0}),
    ]


async def save_inputs(database_url: str, job_id: UUID, esdl: str, reference: str | None) -> None:
    """Store what an OMOTES submission carries besides its parameters, as the gateway does."""
    inputs = await OmotesInputs.connect(database_url)
    try:
        await inputs.save([OmotesInput(job_id, esdl, reference)])
    finally:
        await inputs.close()


async def omotes_task_rows(sql_engine: AsyncEngine) -> int:
    """Rows of the bridge's ledger of dispatched Celery tasks."""
    async with sql_engine.connect() as connection:
        rows = await connection.execute(text("SELECT count(*) FROM omotes_tasks"))
        return int(rows.scalar_one())


async def stored_output_esdl(sql_engine: AsyncEngine, job_id: UUID, attempt_id: UUID) -> bytes:
    """The output ESDL the Celery bridge stored for the attempt (fails if there is none)."""
    async with sql_engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT esdl FROM omotes_outputs WHERE job_id = :job AND attempt_id = :attempt"),
            {"job": job_id, "attempt": attempt_id},
        )
        return bytes(rows.scalar_one())


async def wait_for_job(
    client: SegueClient,
    job_id: UUID,
    holds: Callable[[JobView], bool],
    timeout_s: float = 30.0,
) -> JobView:
    """The job once ``holds`` is true of it (polled); fails the test after ``timeout_s``."""
    view = None
    for _ in range(int(timeout_s / 0.2)):
        view = await client.get(job_id)
        if view is not None and holds(view):
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"the job did not get there within {timeout_s} s: {view}")


def running_attempt(view: JobView) -> bool:
    """Whether the job's latest attempt runs."""
    return bool(view.attempts) and view.attempts[-1].status is AttemptStatus.RUNNING


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> bool:
    """Whether ``check`` holds within ``timeout_s`` (polled)."""
    for _ in range(int(timeout_s / 0.2)):
        if await check():
            return True
        await asyncio.sleep(0.2)
    return await check()


async def test_an_omotes_worker_runs_a_job_to_success(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    celery_names: CeleryNames,
    database_url: str,
    sql_engine: AsyncEngine,
) -> None:
    workflow = celery_names.task_type("success")
    params = {
        "factor": 2,
        "steps": 3,
        "start": "2030-01-01T00:00:00+00:00",
        "horizon": "PT1H30M",
        "mode": "quick",
        "fast": True,
    }
    job_id = uuid4()
    await save_inputs(database_url, job_id, ESDL, "ref1")
    async with (
        bridge_service(legacy_workflows(celery_names)) as running,
        omotes_worker(),
        SegueClient(running.settings.amqp_url, namespace=running.names.namespace) as client,
    ):
        handle = await client.submit(workflow, params, job_id=job_id, priority=6)
        result = await handle.result(timeout=RESULT_TIMEOUT_S)
        view = await client.get(job_id)

    assert result.status is JobStatus.SUCCEEDED, result.error
    output = result.output or {}
    # The output ESDL is stored apart; the step output refers to it.
    output_esdl = await stored_output_esdl(sql_engine, job_id, UUID(output["output_esdl_ref"]))
    assert output["output_esdl_bytes"] == len(output_esdl)
    # The SDK names the output after the input and the job reference: it got both.
    assert 'name="segue_test_ref1"' in output_esdl.decode()
    assert "the test worker computed a result" in output["logs"]
    [message] = output["esdl_messages"]
    assert (message["severity"], message["esdl_object_id"]) == ("INFO", None)
    # The worker got the parameters in their OMOTES wire form: numbers as floats,
    # a datetime as its POSIX timestamp, a duration in seconds.
    worker_params = json.loads(message["technical_message"])
    assert worker_params == {
        "factor": 2.0,
        "steps": 3.0,
        "start": 1893456000.0,
        "horizon": 5400.0,
        "mode": "quick",
        "fast": True,
    }
    assert isinstance(worker_params["steps"], float)
    assert view is not None
    [attempt] = view.attempts
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert output["output_esdl_ref"] == str(attempt.attempt_id)
    assert attempt.worker_id == f"celery:{attempt.attempt_id}:1"
    progress = [entry.data for entry in view.history if entry.type == "step_progress"]
    assert {(p["fraction"], p["message"]) for p in progress} >= {
        (0.3, "loading"),
        (0.7, "computing"),
    }
    assert await eventually(lambda: _no_rows(sql_engine))


async def test_an_omotes_task_error_fails_the_job_with_its_esdl_messages(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    celery_names: CeleryNames,
    sql_engine: AsyncEngine,
) -> None:
    workflow = celery_names.task_type("error")
    async with (
        bridge_service(legacy_workflows(celery_names)) as running,
        omotes_worker(),
        SegueClient(running.settings.amqp_url, namespace=running.names.namespace) as client,
    ):
        handle = await client.submit(workflow)  # through Segue's client: no input ESDL
        result = await handle.result(timeout=RESULT_TIMEOUT_S)
        view = await client.get(handle.job_id)

    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error.kind == "omotes_task_error"
    assert "computation failed: no feasible solution" in result.error.message
    assert json.loads(result.error.details or "") == {
        "esdl_messages": [
            {
                "technical_message": "asset too small",
                "severity": "ERROR",
                "esdl_object_id": "asset-1",
            },
            {
                "technical_message": "check the inputs",
                "severity": "WARNING",
                "esdl_object_id": None,
            },
        ]
    }
    assert view is not None
    # Like OMOTES, a task that reported an error is not run again.
    assert [a.status for a in view.attempts] == [AttemptStatus.FAILED]
    assert await eventually(lambda: _no_rows(sql_engine))


async def test_cancelling_a_job_revokes_and_terminates_its_celery_task(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    celery_names: CeleryNames,
    sql_engine: AsyncEngine,
) -> None:
    workflow = celery_names.task_type("sleep")
    async with (
        bridge_service(legacy_workflows(celery_names)) as running,
        omotes_worker() as worker,
        SegueClient(running.settings.amqp_url, namespace=running.names.namespace) as client,
    ):
        handle = await client.submit(workflow, {"seconds": 100.0})
        view = await wait_for_job(client, handle.job_id, running_attempt)
        attempt_id = view.attempts[-1].attempt_id
        await client.cancel(handle.job_id, reason="the user changed their mind")
        result = await handle.result(timeout=RESULT_TIMEOUT_S)
        # Revoked with terminate=True, signal=SIGTERM (15), as OMOTES does.
        await worker.wait_for_log(f"Terminating {attempt_id} (15)", timeout_s=20)
        await asyncio.sleep(2.0)
        log = worker.log_text()
        view_after = await client.get(handle.job_id)

    assert result.status is JobStatus.CANCELLED
    assert view_after is not None
    assert [a.status for a in view_after.attempts] == [AttemptStatus.CANCELLED]
    assert log.count(f"Worker started new task {handle.job_id}") == 1  # not run again
    assert await eventually(lambda: _no_rows(sql_engine))


async def _no_rows(sql_engine: AsyncEngine) -> bool:
    return await omotes_task_rows(sql_engine) == 0
