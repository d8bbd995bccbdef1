"""The worker SDK prints nothing unless the application configured logging."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from fakes import FakeSink
from segue.logs import library_logger
from segue.protocol.messages import CancelAttempt, StepSucceeded, StepTask
from segue.worker import StepContext, step_handler
from segue.worker.attempt import AttemptSettings
from segue.worker.attempts import RunningAttempts
from structlog_state import unconfigured_structlog  # noqa: F401 - a fixture


def make_task(queue: str) -> StepTask:
    return StepTask(
        job_id=uuid4(),
        workflow="energy_plan",
        step=queue,
        queue=queue,
        attempt=1,
        attempt_id=uuid4(),
    )


async def run_steps() -> FakeSink:
    """Start and run a succeeding and a failing step, and hear a foreign cancel."""

    @step_handler("ok")
    async def ok(ctx: StepContext) -> dict[str, Any]:
        return {"ok": True}

    @step_handler("boom")
    def boom(ctx: StepContext) -> None:
        raise RuntimeError("boom")

    sink = FakeSink()
    attempts = RunningAttempts(sink, AttemptSettings("w1", progress_interval_s=0.01))
    for handler in (ok, boom):
        attempt = await attempts.start(make_task(handler.queue), handler, redelivered=False)
        assert attempt is not None
        await attempt.run()
    attempts.cancel(CancelAttempt(job_id=uuid4(), attempt_id=uuid4(), reason="elsewhere"))
    return sink


@pytest.mark.usefixtures("unconfigured_structlog")
async def test_the_worker_prints_nothing_without_logging_configured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sink = await run_steps()
    assert any(isinstance(event, StepSucceeded) for event in sink.events)
    assert capsys.readouterr() == ("", "")


@pytest.mark.usefixtures("unconfigured_structlog")
async def test_the_worker_logs_once_the_application_configured_structlog() -> None:
    with capture_logs() as logs:
        await run_steps()
    assert {"step_succeeded", "step_failed"} <= {entry["event"] for entry in logs}


@pytest.mark.usefixtures("unconfigured_structlog")
def test_a_library_logger_keeps_its_bound_values() -> None:
    log = library_logger("segue.worker", worker_id="w1").bind(job_id="j1")
    with capture_logs() as logs:
        log.warning("something_happened", detail=3)
    assert logs == [
        {
            "event": "something_happened",
            "log_level": "warning",
            "worker_id": "w1",
            "job_id": "j1",
            "detail": 3,
        }
    ]
