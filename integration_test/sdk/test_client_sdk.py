"""The client SDK against real RabbitMQ, with the test playing the orchestrator."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from segue.client import (
    BrokerUnavailableError,
    ForbiddenError,
    JobRejectedError,
    NotConnectedError,
    RequestFailedError,
    RequestTimeoutError,
    SegueClient,
    job_id_for_key,
)
from segue.protocol import kinds
from segue.protocol.messages import (
    CancelJob,
    ErrorInfo,
    ErrorReply,
    GetJob,
    JobFinished,
    JobProgressed,
    JobReply,
    JobStatus,
    JobStatusChanged,
    JobView,
    ListWorkflows,
    RetryJob,
    SubmitJob,
    Update,
    WorkflowInfo,
    WorkflowsReply,
)

from .sdk_harness import Harness

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def client_for(harness: Harness, request_timeout_s: float = 5.0) -> SegueClient:
    return SegueClient(
        harness.url, namespace=harness.names.namespace, request_timeout_s=request_timeout_s
    )


def job_view(job_id: UUID, status: JobStatus, **fields: Any) -> JobView:
    data: dict[str, Any] = {
        "job_id": job_id,
        "workflow": "energy_plan",
        "workflow_version": "1",
        "workflow_hash": "h",
        "status": status,
        "priority": 5,
        "reference": None,
        "params": {"horizon_years": 5},
        "current_step": "report",
        "outputs": {"report": {"summary": "fine"}} if status is JobStatus.SUCCEEDED else {},
        "error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "finished_at": NOW if status.is_terminal else None,
    }
    data.update(fields)
    return JobView.model_validate(data)


async def test_submit_then_follow_updates_to_the_result(harness: Harness) -> None:
    await harness.watch_commands()
    async with client_for(harness) as client:
        job = await client.submit(
            "energy_plan", {"horizon_years": 5}, priority=7, reference="order-1"
        )
        submit, _ = await harness.next_command(SubmitJob)
        # Answer at once: the client listened before it sent the submission.
        sent: list[tuple[Update, str]] = [
            (
                JobStatusChanged(job_id=job.job_id, status=JobStatus.RUNNING, step="a", at=NOW),
                "status",
            ),
            (JobProgressed(job_id=job.job_id, step="a", fraction=0.5, at=NOW), "progress"),
            (
                JobFinished(job_id=job.job_id, status=JobStatus.SUCCEEDED, output={"k": 1}, at=NOW),
                "result",
            ),
        ]
        for update, kind in sent:
            await harness.publish_update(update, kind, job.job_id)
        accepted = await job.accepted(timeout=5)
        got = await asyncio.wait_for(_collect(job.updates()), 5)
        result = await job.result(timeout=5)

    assert submit.job_id == job.job_id
    assert submit.updates_key is not None
    assert submit.updates_key.startswith("client.guest."), "updates come on the user's own key"
    assert (submit.workflow, submit.params) == ("energy_plan", {"horizon_years": 5})
    assert (submit.priority, submit.reference) == (7, "order-1")
    assert accepted == sent[0][0]
    assert got == [update for update, _ in sent]
    assert result == sent[-1][0]


async def test_an_update_published_twice_is_seen_once(harness: Harness) -> None:
    await harness.watch_commands()
    async with client_for(harness) as client:
        job = await client.submit("quick_check")
        await harness.next_command(SubmitJob)
        running = JobStatusChanged(job_id=job.job_id, status=JobStatus.RUNNING, at=NOW)
        await harness.publish_update(running, "status", job.job_id, message_id="m-1")
        await harness.publish_update(running, "status", job.job_id, message_id="m-1")
        done = JobFinished(job_id=job.job_id, status=JobStatus.SUCCEEDED, at=NOW)
        await harness.publish_update(done, "result", job.job_id, message_id="m-2")
        got = await asyncio.wait_for(_collect(job.updates()), 5)

    assert got == [running, done]


async def test_a_rejected_submission_raises_on_accepted(harness: Harness) -> None:
    await harness.watch_commands()
    async with client_for(harness) as client:
        job = await client.submit("no_such_workflow")
        await harness.next_command(SubmitJob)
        error = ErrorInfo(kind=kinds.UNKNOWN_WORKFLOW, message="no workflow 'no_such_workflow'")
        rejected = JobFinished(job_id=job.job_id, status=JobStatus.FAILED, error=error, at=NOW)
        await harness.publish_update(rejected, "result", job.job_id)
        with pytest.raises(JobRejectedError, match="no_such_workflow") as caught:
            await job.accepted(timeout=5)

    assert caught.value.kind == kinds.UNKNOWN_WORKFLOW


async def test_the_same_idempotency_key_submits_the_same_job(harness: Harness) -> None:
    await harness.watch_commands()
    async with client_for(harness) as client:
        first = await client.submit("quick_check", idempotency_key="order-77")
        second = await client.submit("quick_check", idempotency_key="order-77")
        sent = [(await harness.next_command(SubmitJob))[0] for _ in range(2)]

    assert first.job_id == second.job_id == job_id_for_key("order-77")
    assert {command.job_id for command in sent} == {first.job_id}


async def test_result_of_a_finished_job_comes_from_the_query(harness: Harness) -> None:
    await harness.watch_commands()
    job_id = uuid4()
    async with client_for(harness) as client:
        handle = await client.follow(job_id)
        waiting = asyncio.create_task(handle.result(timeout=10))
        query, request = await harness.next_command(GetJob)
        await harness.reply(
            request, JobReply(job_id=job_id, job=job_view(job_id, JobStatus.SUCCEEDED))
        )
        result = await waiting

    assert query.job_id == job_id
    assert result.status is JobStatus.SUCCEEDED
    assert result.output == {"summary": "fine"}


async def test_result_of_a_running_job_waits_for_the_update(harness: Harness) -> None:
    await harness.watch_commands()
    job_id = uuid4()
    async with client_for(harness) as client:
        handle = await client.follow(job_id)
        waiting = asyncio.create_task(handle.result(timeout=10))
        _, request = await harness.next_command(GetJob)
        await harness.reply(
            request, JobReply(job_id=job_id, job=job_view(job_id, JobStatus.RUNNING))
        )
        await asyncio.sleep(0.2)
        assert not waiting.done()
        done = JobFinished(job_id=job_id, status=JobStatus.TIMED_OUT, at=NOW)
        # Followed with the user's own binding: only the user's job's updates come.
        await harness.publish_update(done, "result", job_id, owner="somebody-else")
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await harness.publish_update(done, "result", job_id, owner="guest")
        result = await waiting

    assert result == done


async def test_result_is_queried_again_after_a_reconnect(harness: Harness) -> None:
    await harness.watch_commands()
    job_id = uuid4()
    async with client_for(harness) as client:
        handle = await client.follow(job_id)
        waiting = asyncio.create_task(handle.result(timeout=20))
        _, request = await harness.next_command(GetJob)
        await harness.reply(
            request, JobReply(job_id=job_id, job=job_view(job_id, JobStatus.RUNNING))
        )
        # The connection drops; the job's result update is lost with the reply queue.
        session = client._session  # test-only access: force a reconnect
        assert session is not None
        await session.connection.reconnect()
        query, request = await harness.next_command(GetJob, wait_s=15)
        await harness.reply(
            request, JobReply(job_id=job_id, job=job_view(job_id, JobStatus.FAILED))
        )
        result = await waiting

    assert query.job_id == job_id
    assert result.status is JobStatus.FAILED


async def test_get_and_workflows_are_answered_on_the_reply_queue(harness: Harness) -> None:
    await harness.watch_commands()
    job_id = uuid4()
    info = WorkflowInfo(
        name="energy_plan",
        description="d",
        version="1",
        content_hash="h",
        steps=["prepare"],
        parameters_schema={"type": "object"},
    )
    async with client_for(harness) as client:
        getting = asyncio.create_task(client.get(job_id))
        _, request = await harness.next_command(GetJob)
        await harness.reply(
            request, JobReply(job_id=job_id, job=job_view(job_id, JobStatus.QUEUED))
        )
        view = await getting

        missing = asyncio.create_task(client.get(uuid4()))
        query, request = await harness.next_command(GetJob)
        await harness.reply(request, JobReply(job_id=query.job_id, job=None))

        listing = asyncio.create_task(client.workflows())
        _, request = await harness.next_command(ListWorkflows)
        await harness.reply(request, WorkflowsReply(workflows=[info]))

        failing = asyncio.create_task(client.workflows())
        _, request = await harness.next_command(ListWorkflows)
        await harness.reply(request, ErrorReply(error=ErrorInfo(kind="busy", message="try later")))

        assert view is not None
        assert view.status is JobStatus.QUEUED
        assert await missing is None
        assert await listing == [info]
        with pytest.raises(RequestFailedError, match="try later"):
            await failing


async def test_commands_carry_the_connection_user_as_user_id(harness: Harness) -> None:
    await harness.watch_commands()
    job_id = uuid4()
    async with client_for(harness) as client:
        await client.submit("quick_check", job_id=job_id)
        _, submitted = await harness.next_command(SubmitJob)
        await client.cancel(job_id)
        _, cancelled = await harness.next_command(CancelJob)
        getting = asyncio.create_task(client.get(job_id))
        _, queried = await harness.next_command(GetJob)
        await harness.reply(queried, JobReply(job_id=job_id, job=None))
        await getting

    # The URL's user; RabbitMQ itself refuses any other (see test_e2e_permissions).
    assert [m.user_id for m in (submitted, cancelled, queried)] == ["guest"] * 3
    assert queried.reply_to is not None
    assert queried.reply_to.startswith(harness.names.reply_queue_prefix("guest"))


async def test_an_update_older_than_the_last_seen_is_dropped(harness: Harness) -> None:
    await harness.watch_commands()
    async with client_for(harness) as client:
        job = await client.submit("quick_check")
        await harness.next_command(SubmitJob)
        running = JobStatusChanged(job_id=job.job_id, status=JobStatus.RUNNING, at=NOW, seq=2)
        late = JobProgressed(job_id=job.job_id, step="a", fraction=0.1, at=NOW, seq=1)
        done = JobFinished(job_id=job.job_id, status=JobStatus.SUCCEEDED, at=NOW, seq=3)
        await harness.publish_update(running, "status", job.job_id)
        await harness.publish_update(late, "progress", job.job_id)
        await harness.publish_update(done, "result", job.job_id)
        got = await asyncio.wait_for(_collect(job.updates()), 5)

    assert got == [running, done]


async def test_a_forbidden_answer_raises_forbidden_error(harness: Harness) -> None:
    await harness.watch_commands()
    async with client_for(harness) as client:
        retrying = asyncio.create_task(client.retry(uuid4()))
        _, request = await harness.next_command(RetryJob)
        refusal = ErrorInfo(kind=kinds.FORBIDDEN, message="job belongs to another user")
        await harness.reply(request, ErrorReply(error=refusal))
        with pytest.raises(ForbiddenError, match="another user"):
            await retrying


async def test_cancel_sends_the_reason(harness: Harness) -> None:
    await harness.watch_commands()
    job_id = uuid4()
    async with client_for(harness) as client:
        await client.cancel(job_id, reason="changed my mind")
        command, _ = await harness.next_command(CancelJob)

    assert (command.job_id, command.reason) == (job_id, "changed my mind")


async def test_queries_time_out_when_no_orchestrator_answers(harness: Harness) -> None:
    async with client_for(harness, request_timeout_s=0.5) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="orchestrator"):
            await client.get(uuid4())
        with pytest.raises(RequestTimeoutError):
            await client.workflows()

    assert time.monotonic() - started < 3


async def test_connection_errors_are_clear() -> None:
    client = SegueClient("amqp://guest:secret@127.0.0.1:1/", namespace="tnobroker")
    with pytest.raises(NotConnectedError):
        await client.get(uuid4())
    with pytest.raises(BrokerUnavailableError, match=r"127\.0\.0\.1:1") as caught:
        await client.connect()
    assert "secret" not in str(caught.value)


async def _collect(updates: Any) -> list[Update]:
    return [update async for update in updates]
