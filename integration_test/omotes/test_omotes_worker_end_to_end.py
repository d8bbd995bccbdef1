"""The whole drop-in: the unmodified OMOTES client submits through the gateway, the
unmodified OMOTES Celery worker runs the tasks the bridge dispatches, and the
client hears what it would from the OMOTES orchestrator."""

from __future__ import annotations

import json
from typing import Any

from .conftest import BridgeService, CeleryNames, CeleryWorkers, OmotesClient
from .test_omotes_worker import ESDL, legacy_workflows


def by_kind(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The client's result of each job, by the kind of its task type."""
    kinds = {
        line["job_id"]: line["workflow"].rsplit("_", 1)[-1]
        for line in lines
        if line["event"] == "submitted"
    }
    return {kinds[line["job_id"]]: line for line in lines if line["event"] == "result"}


def statuses(lines: list[dict[str, Any]], job_id: str) -> list[str]:
    return [
        line["status"] for line in lines if line["event"] == "status" and line["job_id"] == job_id
    ]


async def test_omotes_clients_jobs_run_on_omotes_celery_workers(
    bridge_service: BridgeService,
    omotes_worker: CeleryWorkers,
    omotes_client: OmotesClient,
    celery_names: CeleryNames,
) -> None:
    def job(kind: str, **spec: Any) -> dict[str, Any]:
        return {"workflow": celery_names.task_type(kind), "esdl": ESDL, **spec}

    plan = {
        "jobs": [
            job(
                "success",
                params={
                    "factor": 2.0,
                    "steps": 3,
                    "start": {"$datetime": "2030-01-01T00:00:00+00:00"},
                    "horizon": {"$timedelta": 5400},
                    "mode": "quick",
                    "fast": True,
                },
                reference="ref1",
                priority="HIGH",
            ),
            job("error"),
            job("crash"),
            job("sleep", params={"seconds": 100.0}, delete_on="RUNNING"),
        ],
        "wait_s": 100,
    }
    async with (
        bridge_service(legacy_workflows(celery_names)),
        omotes_worker() as worker,
    ):
        lines = await omotes_client(plan, timeout_s=110)
        log = worker.log_text()

    assert lines[-1]["complete"], lines
    results = by_kind(lines)
    success, error, crash, sleep = (results[k] for k in ("success", "error", "crash", "sleep"))

    assert success["result_type"] == "SUCCEEDED"
    assert 'name="segue_test_ref1"' in success["output_esdl"]
    assert "the test worker computed a result" in success["logs"]
    [params] = success["esdl_messages"]
    assert json.loads(params["technical_message"]) == {
        "factor": 2.0,
        "steps": 3.0,
        "start": 1893456000.0,
        "horizon": 5400.0,
        "mode": "quick",
        "fast": True,
    }
    progress = [
        (line["progress"], line["message"])
        for line in lines
        if line["event"] == "progress" and line["job_id"] == success["job_id"]
    ]
    assert (0.3, "loading") in progress
    assert (0.7, "computing") in progress
    assert statuses(lines, success["job_id"]) == ["RUNNING"]

    assert error["result_type"] == "ERROR"
    assert "computation failed: no feasible solution" in error["logs"]
    assert error["esdl_messages"] == [
        {"technical_message": "asset too small", "severity": "ERROR", "esdl_object_id": "asset-1"},
        {"technical_message": "check the inputs", "severity": "WARNING", "esdl_object_id": None},
    ]

    assert crash["result_type"] == "ERROR"
    assert crash["logs"].startswith("worker_lost: worker lost 3 times")

    assert sleep["result_type"] == "CANCELLED"
    assert statuses(lines, sleep["job_id"]) == ["RUNNING", "CANCELLED"]
    assert "Terminating " in log  # the delete revoked the running task
