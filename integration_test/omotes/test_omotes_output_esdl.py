"""Output ESDLs of many megabytes, end to end: the unmodified OMOTES Celery worker
returns one, the Celery bridge stores it in ``omotes_outputs`` and reports a step
output that only refers to it, and the gateway sends the unmodified OMOTES client
the ESDL the worker sent, byte for byte. A client that deletes its job
(``delete_job``) deletes the job's stored ESDLs."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.protocol.messages import JobStatus
from segue.store.repository import Store
from segue.workflows.model import DEFAULT_MAX_OUTPUT_BYTES

from .conftest import BridgeService, CeleryNames, CeleryWorkers, OmotesClient
from .test_omotes_worker import ESDL, eventually, legacy_workflows

WORKER_SENT = re.compile(r"output ESDL sha256=([0-9a-f]{64}) bytes=(\d+)")
"""What the test worker prints (into the result's logs) of the ESDL it returns."""


def the_result(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The client's one result, once every result arrived (fails otherwise)."""
    assert lines[-1] == {**lines[-1], "event": "done", "complete": True}, lines[-20:]
    assert not [line for line in lines if line["event"] == "error"], lines
    [result] = [line for line in lines if line["event"] == "result"]
    return result


async def stored_esdls(sql_engine: AsyncEngine, job_id: UUID) -> tuple[list[bytes], int]:
    """The job's rows in ``omotes_outputs`` (their ESDLs) and in ``omotes_inputs`` (how many)."""
    async with sql_engine.connect() as connection:
        outputs = await connection.execute(
            text("SELECT esdl FROM omotes_outputs WHERE job_id = :job_id"), {"job_id": job_id}
        )
        inputs = await connection.execute(
            text("SELECT count(*) FROM omotes_inputs WHERE job_id = :job_id"), {"job_id": job_id}
        )
        return [bytes(row[0]) for row in outputs], int(inputs.scalar_one())


async def test_a_multi_megabyte_output_esdl_reaches_the_omotes_client_byte_identical(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    omotes_client: OmotesClient,
    celery_names: CeleryNames,
    sql_engine: AsyncEngine,
    store: Store,
) -> None:
    workflow = celery_names.task_type("large")
    # Reference "": the SDK's renaming keeps the input's name, so the worker knows
    # exactly what the SDK sends (see omotes_test_worker.py).
    job = {"workflow": workflow, "esdl": ESDL, "reference": "", "params": {"megabytes": 4.0}}
    async with bridge_service(legacy_workflows(celery_names)), omotes_worker():
        lines = await omotes_client({"jobs": [job], "esdl_digest_only": True}, timeout_s=110)
    result = the_result(lines)
    job_id = UUID(result["job_id"])
    view = await store.job_view(job_id, include_history=False)
    [stored], _ = await stored_esdls(sql_engine, job_id)

    assert result["result_type"] == "SUCCEEDED", result["logs"]
    sent = WORKER_SENT.search(result["logs"])
    assert sent is not None, result["logs"]
    sha256, size = sent.group(1), int(sent.group(2))
    assert size >= 3_000_000
    assert size > DEFAULT_MAX_OUTPUT_BYTES  # more than a legacy workflow's step output may hold
    # What the client got is what the worker sent, byte for byte.
    assert (result["output_esdl_sha256"], result["output_esdl_bytes"]) == (sha256, size)
    assert (hashlib.sha256(stored).hexdigest(), len(stored)) == (sha256, size)
    assert [m["technical_message"] for m in result["esdl_messages"]] == ["a large result"]
    # Segue's own step output only refers to it.
    assert view is not None
    assert view.status is JobStatus.SUCCEEDED
    output = view.outputs[workflow]
    assert (output["output_esdl_bytes"], output["output_esdl_ref"]) == (
        size,
        str(view.attempts[-1].attempt_id),
    )
    assert "output_esdl" not in output
    assert len(json.dumps(output)) < 10_000


async def test_deleting_a_finished_job_deletes_its_stored_esdls(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    omotes_client: OmotesClient,
    celery_names: CeleryNames,
    sql_engine: AsyncEngine,
    store: Store,
) -> None:
    job = {
        "workflow": celery_names.task_type("success"),
        "esdl": ESDL,
        "reference": "ref1",
        "params": {
            "factor": 2.0,
            "steps": 3,
            "start": {"$datetime": "2030-01-01T00:00:00+00:00"},
            "horizon": {"$timedelta": 60},
            "mode": "quick",
            "fast": True,
        },
        "delete_on": "result",  # OMOTES: "Delete a job and all of its resources"
    }
    async with bridge_service(legacy_workflows(celery_names)), omotes_worker():
        lines = await omotes_client({"jobs": [job]}, timeout_s=110)
        result = the_result(lines)
        job_id = UUID(result["job_id"])

        async def gone() -> bool:
            return await stored_esdls(sql_engine, job_id) == ([], 0)

        deleted = await eventually(gone, timeout_s=20)
    view = await store.job_view(job_id, include_history=False)

    assert result["result_type"] == "SUCCEEDED"
    assert 'name="segue_test_ref1"' in result["output_esdl"]  # read from omotes_outputs
    assert [line["job_id"] for line in lines if line["event"] == "deleted"] == [str(job_id)]
    assert deleted, "the job's input and output ESDLs are deleted"
    assert view is not None
    assert view.status is JobStatus.SUCCEEDED  # the job itself is kept (retention prunes it)
