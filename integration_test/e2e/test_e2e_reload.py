"""Reloading the workflow file (SIGHUP) changes new jobs only; a bad file is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segue.client import SegueClient
from segue.protocol.messages import JobStatus
from segue.settings import Settings
from segue.worker import Worker

from .conftest import DEMO_CONFIG, running_service


async def wait_for_workflows(client: SegueClient, expected: set[str]) -> None:
    """Poll the orchestrator until it lists exactly ``expected``."""
    names: set[str] = set()
    for _ in range(50):
        names = {info.name for info in await client.workflows()}
        if names == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"workflows are {names}, expected {expected}")


async def test_reload_serves_new_definitions_and_running_jobs_keep_theirs(
    settings: Settings,
    tmp_path: Path,
    client: SegueClient,
    make_worker: Callable[[int], Worker],
) -> None:
    demo: dict[str, Any] = json.loads(DEMO_CONFIG.read_text())
    path = tmp_path / "workflow_config.json"
    path.write_text(json.dumps(demo))
    reload = asyncio.Event()
    async with running_service(settings.model_copy(update={"workflow_config": path}), reload):
        running = await client.submit("quick_check", {"step_seconds": 2})
        await running.accepted()
        before = await client.get(running.job_id)
        assert before is not None

        changed = json.loads(json.dumps(demo))
        quick = next(w for w in changed["workflows"] if w["name"] == "quick_check")
        quick["version"] = "2"
        extra = {**quick, "name": "quick_check_v2", "description": "a copy"}
        changed["workflows"].append(extra)
        path.write_text(json.dumps(changed))
        reload.set()
        await wait_for_workflows(
            client, {"energy_plan", "quick_check", "quick_check_v2", "scenario_study"}
        )

        path.write_text('{"workflows": [}')  # broken: refused, the old definitions stay
        reload.set()
        await asyncio.sleep(0.5)
        await wait_for_workflows(
            client, {"energy_plan", "quick_check", "quick_check_v2", "scenario_study"}
        )

        worker = make_worker(2)
        task = asyncio.create_task(worker.run())
        try:
            assert (await running.result(timeout=60)).status is JobStatus.SUCCEEDED
            newer = await client.submit("quick_check", {})
            assert (await newer.result(timeout=60)).status is JobStatus.SUCCEEDED
        finally:
            worker.stop()
            await asyncio.wait_for(task, 40)
        old_view = await client.get(running.job_id)
        new_view = await client.get(newer.job_id)
        assert old_view is not None
        assert new_view is not None
        assert (old_view.workflow_version, old_view.workflow_hash) == (
            before.workflow_version,
            before.workflow_hash,
        ), "a running job keeps the definition it started with"
        assert new_view.workflow_version == "2"
        assert new_view.workflow_hash != old_view.workflow_hash
