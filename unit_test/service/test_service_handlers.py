"""The batch handlers: every message of a batch gets one outcome, in order, and bad
input is answered (when it names a job) and dead-lettered with a precise reason."""

from __future__ import annotations

import asyncio
import gc
import warnings
from dataclasses import dataclass
from typing import cast
from uuid import UUID

import asyncpg
import pytest
from pydantic import BaseModel

from fakes import T0, Clock, FakeJobStore, FakeMessage, FakePublisher, FakeSender, incoming
from segue.broker.boundary import ConsumeBoundary, Outcome, Verdict
from segue.broker.publisher import ConfirmedPublisher
from segue.protocol import kinds
from segue.protocol.codec import REPLY_ADAPTER, UPDATE_ADAPTER, decode
from segue.protocol.messages import (
    CancelJob,
    ErrorInfo,
    ErrorReply,
    GetJob,
    JobFinished,
    JobReply,
    JobStatus,
    ListWorkflows,
    QueueEstimate,
    Reply,
    RetryJob,
    StepFailed,
    StepStarted,
    StepSucceeded,
    SubmitJob,
    WorkflowsReply,
)
from segue.service.failures import is_transient
from segue.service.handlers import Handlers
from segue.workflows.loader import Catalog
from shell_builders import NAMES, applier, body, catalog, first_attempt, raw

JOB_A = UUID("00000000-0000-4000-8000-00000000000a")
JOB_B = UUID("00000000-0000-4000-8000-00000000000b")
JOB_C = UUID("00000000-0000-4000-8000-00000000000c")
REPLY_QUEUE = NAMES.reply_queue_prefix(None) + "client-1"


@dataclass
class Shell:
    """Handlers on the real applier, over fakes."""

    store: FakeJobStore
    sender: FakeSender
    publisher: FakePublisher
    workflows: Catalog
    handlers: Handlers

    async def commands(self, *messages: FakeMessage) -> list[Outcome]:
        return list(await self.handlers.on_commands(incoming(messages)))

    async def events(self, *messages: FakeMessage) -> list[Outcome]:
        return list(await self.handlers.on_events(incoming(messages)))

    async def command(self, message: FakeMessage) -> Outcome:
        (outcome,) = await self.commands(message)
        return outcome

    async def event(self, message: FakeMessage) -> Outcome:
        (outcome,) = await self.events(message)
        return outcome

    def results(self, job_id: UUID) -> list[JobFinished]:
        """The job results published straight to followers (rejections)."""
        found = []
        for message in self.publisher.to(f"job.{job_id}.result"):
            assert message.exchange == NAMES.updates_exchange
            update = decode(UPDATE_ADAPTER, message.body)
            assert isinstance(update, JobFinished)
            found.append(update)
        return found

    def replies(self) -> list[tuple[str | None, Reply]]:
        """Replies published: (correlation id, body)."""
        return [
            (message.correlation_id, decode(REPLY_ADAPTER, message.body))
            for message in self.publisher.to(REPLY_QUEUE)
            if message.exchange == ""
        ]


@pytest.fixture
def shell() -> Shell:
    store, sender, publisher, clock = FakeJobStore(), FakeSender(), FakePublisher(), Clock()
    workflows = catalog()
    handlers = Handlers(
        applier(store, sender, clock),
        store,
        workflows,
        publisher,
        NAMES,
        clock,
        100_000,
        new_secret=lambda: None,  # attempt ids as :func:`first_attempt` derives them
    )
    return Shell(store, sender, publisher, workflows, handlers)


def message(model: BaseModel, reply_to: str | None = None, correlation_id: str = "") -> FakeMessage:
    return FakeMessage(body(model), reply_to=reply_to, correlation_id=correlation_id or None)


def submit(job_id: UUID, workflow: str = "quick_check", **params: object) -> FakeMessage:
    return message(SubmitJob(job_id=job_id, workflow=workflow, params=dict(params)))


def started(job_id: UUID, attempt_id: UUID | None = None) -> FakeMessage:
    attempt = attempt_id or first_attempt(job_id)
    return message(StepStarted(job_id=job_id, attempt_id=attempt, worker_id="w1"))


def succeeded(job_id: UUID) -> FakeMessage:
    return message(StepSucceeded(job_id=job_id, attempt_id=first_attempt(job_id), output={}))


def failed(job_id: UUID) -> FakeMessage:
    error = ErrorInfo(kind="ValueError", message="boom")
    return message(StepFailed(job_id=job_id, attempt_id=first_attempt(job_id), error=error))


def acked(event: str, reason: str = "") -> Outcome:
    return Outcome.ack(event, reason)


# --- commands ---------------------------------------------------------------------------


async def test_a_valid_submission_is_stored_and_acked(shell: Shell) -> None:
    outcome = await shell.command(submit(JOB_A, horizon=4))

    assert outcome == acked("job_submitted")
    job = shell.store.job(JOB_A)
    assert job.params == {"horizon": 4}
    assert job.status is JobStatus.QUEUED
    assert len(shell.sender.rows) == 1
    assert shell.results(JOB_A) == []


async def test_invalid_json_is_dead_lettered_with_the_reason(shell: Shell) -> None:
    outcome = await shell.command(FakeMessage(b'{"type": "submit_job", '))

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert outcome.reason.startswith("invalid command: body is not valid JSON")
    assert shell.publisher.published == []
    assert shell.store.write_calls == []


async def test_an_invalid_submission_naming_a_new_job_is_answered_with_a_rejection(
    shell: Shell,
) -> None:
    outcome = await shell.command(
        FakeMessage(raw(type="submit_job", job_id=str(JOB_A), workflow="", priority=3))
    )

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert outcome.reason == (
        "invalid command: submit_job.workflow: String should have at least 1 character"
    )
    (result,) = shell.results(JOB_A)
    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error.kind == kinds.INVALID_MESSAGE
    assert "workflow" in result.error.message
    assert JOB_A not in shell.store.jobs


async def test_an_invalid_submission_naming_an_existing_job_never_announces_it_failed(
    shell: Shell,
) -> None:
    await shell.command(submit(JOB_A))

    outcome = await shell.command(FakeMessage(raw(type="submit_job", job_id=str(JOB_A))))

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert shell.results(JOB_A) == []
    assert shell.store.job(JOB_A).status is JobStatus.QUEUED


async def test_an_unknown_workflow_is_rejected_naming_the_known_ones(shell: Shell) -> None:
    outcome = await shell.command(submit(JOB_A, workflow="no_such_flow"))

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert "no_such_flow" in outcome.reason
    (result,) = shell.results(JOB_A)
    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error.kind == kinds.UNKNOWN_WORKFLOW
    assert result.error.message.endswith("known: quick_check, slow_plan")
    assert shell.store.jobs == {}


async def test_invalid_parameters_are_rejected_with_the_reason(shell: Shell) -> None:
    outcome = await shell.command(submit(JOB_A, horizon=0))

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert outcome.reason.startswith("invalid parameters: ")
    assert "horizon" in outcome.reason
    (result,) = shell.results(JOB_A)
    assert result.error is not None
    assert result.error.kind == kinds.INVALID_PARAMETERS
    assert "minimum of 1" in result.error.message
    assert shell.store.jobs == {}


async def test_a_duplicate_submission_is_acked_and_makes_one_job(shell: Shell) -> None:
    first = await shell.command(submit(JOB_A))
    again_alone = await shell.command(submit(JOB_A))
    together = await shell.commands(submit(JOB_B), submit(JOB_B))

    assert first == acked("job_submitted")
    assert again_alone == acked("submission_ignored", "duplicate submission")
    assert together == [acked("job_submitted"), acked("submission_ignored", "duplicate submission")]
    tasks = [m for m in shell.sender.messages if m.exchange == NAMES.tasks_exchange]
    assert len(tasks) == 2  # one per job


async def test_a_cancel_of_a_job_not_submitted_yet_is_kept_for_its_submission(
    shell: Shell,
) -> None:
    outcome = await shell.command(message(CancelJob(job_id=JOB_A, reason="changed my mind")))

    assert outcome.verdict is Verdict.ACK
    assert outcome.event == "cancel_pending"
    assert shell.store.jobs == {}
    assert shell.store.pending_cancels[JOB_A].reason == "changed my mind"

    submitted = await shell.command(submit(JOB_A))

    assert submitted == acked("job_submitted")
    job = shell.store.job(JOB_A)
    assert job.status is JobStatus.CANCELLED
    assert job.attempts == ()
    assert shell.store.history_types(JOB_A) == ["job_submitted", "job_cancelled"]
    assert [m for m in shell.sender.messages if m.exchange == NAMES.tasks_exchange] == []
    assert shell.store.pending_cancels == {}


async def test_a_cancel_before_its_submission_in_one_batch_ends_the_job_unrun(
    shell: Shell,
) -> None:
    outcomes = await shell.commands(message(CancelJob(job_id=JOB_A)), submit(JOB_A))

    assert [o.event for o in outcomes] == ["cancel_pending", "job_submitted"]
    assert shell.store.job(JOB_A).status is JobStatus.CANCELLED
    assert shell.store.pending_cancels == {}


async def test_cancel_of_a_job_is_applied_then_ignored(shell: Shell) -> None:
    await shell.command(submit(JOB_A))

    first = await shell.command(message(CancelJob(job_id=JOB_A)))
    again = await shell.command(message(CancelJob(job_id=JOB_A)))

    assert first == acked("job_cancel_applied")
    assert again == acked("cancel_ignored", "job is cancelled")
    assert shell.store.job(JOB_A).status is JobStatus.CANCELLED


async def test_a_retry_with_reply_to_is_answered_with_the_rerun_job(shell: Shell) -> None:
    await shell.command(submit(JOB_A))
    await shell.event(failed(JOB_A))
    assert shell.store.job(JOB_A).status is JobStatus.FAILED

    outcome = await shell.command(message(RetryJob(job_id=JOB_A), REPLY_QUEUE, "corr-7"))

    assert outcome == acked("job_retried")
    ((correlation_id, reply),) = shell.replies()
    assert correlation_id == "corr-7"
    assert isinstance(reply, JobReply)
    assert reply.job is not None
    assert (reply.job.status, reply.job.run) == (JobStatus.QUEUED, 2)


async def test_a_retry_of_an_unknown_job_is_answered_and_dead_lettered(shell: Shell) -> None:
    outcome = await shell.command(message(RetryJob(job_id=JOB_A), REPLY_QUEUE, "corr-8"))

    assert outcome.verdict is Verdict.DEAD_LETTER
    ((correlation_id, reply),) = shell.replies()
    assert correlation_id == "corr-8"
    assert isinstance(reply, ErrorReply)
    assert reply.error.kind == kinds.UNKNOWN_JOB


async def test_a_retry_of_a_running_job_is_refused_and_acked(shell: Shell) -> None:
    await shell.command(submit(JOB_A))

    outcome = await shell.command(message(RetryJob(job_id=JOB_A), REPLY_QUEUE, "corr-9"))

    assert outcome.verdict is Verdict.ACK
    assert outcome.event == "retry_refused"
    ((_, reply),) = shell.replies()
    assert isinstance(reply, ErrorReply)
    assert reply.error.kind == kinds.RETRY_REFUSED
    assert shell.store.job(JOB_A).run == 1


async def test_get_job_without_reply_to_is_dead_lettered(shell: Shell) -> None:
    await shell.command(submit(JOB_A))

    outcome = await shell.command(message(GetJob(job_id=JOB_A)))

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert "reply_to" in outcome.reason
    assert shell.publisher.published == []


async def test_get_job_is_answered_from_the_store(shell: Shell) -> None:
    await shell.command(submit(JOB_A))

    outcome = await shell.command(message(GetJob(job_id=JOB_A), REPLY_QUEUE, "corr-1"))

    assert outcome == acked("job_queried")
    ((correlation_id, reply),) = shell.replies()
    assert correlation_id == "corr-1"
    assert isinstance(reply, JobReply)
    assert reply.job is not None
    assert [entry.type for entry in reply.job.history] == ["job_submitted", "step_dispatched"]


def an_estimate(position: int) -> QueueEstimate:
    """A queue estimate as the store would make it."""
    return QueueEstimate(
        step="quick_check",
        queue="quick_check",
        position=position,
        waiting=position,
        busy=1,
        workers=1,
        step_duration_s=2.0,
        samples=5,
        eta_s=2.0 * position,
        at=T0,
    )


async def test_get_job_with_include_queue_answers_where_a_waiting_step_stands(
    shell: Shell,
) -> None:
    await shell.command(submit(JOB_A))  # its task is dispatched: it waits in its queue
    shell.store.estimates[JOB_A] = an_estimate(3)

    await shell.command(message(GetJob(job_id=JOB_A, include_queue=True), REPLY_QUEUE))
    await shell.command(message(GetJob(job_id=JOB_A), REPLY_QUEUE))

    (_, asked), (_, plain) = shell.replies()
    assert isinstance(asked, JobReply)
    assert asked.job is not None
    assert asked.job.queue == an_estimate(3)
    assert isinstance(plain, JobReply)
    assert plain.job is not None
    assert plain.job.queue is None
    assert shell.store.estimated == [JOB_A], "estimated only when asked"


async def test_no_queue_estimate_is_made_once_the_step_runs(shell: Shell) -> None:
    await shell.command(submit(JOB_A))
    await shell.event(started(JOB_A))
    shell.store.estimates[JOB_A] = an_estimate(1)

    await shell.command(message(GetJob(job_id=JOB_A, include_queue=True), REPLY_QUEUE))

    ((_, reply),) = shell.replies()
    assert isinstance(reply, JobReply)
    assert reply.job is not None
    assert reply.job.queue is None
    assert shell.store.estimated == []


async def test_list_workflows_is_answered_with_the_catalog(shell: Shell) -> None:
    outcome = await shell.command(message(ListWorkflows(), REPLY_QUEUE, "corr-2"))

    assert outcome == acked("workflows_listed")
    ((_, reply),) = shell.replies()
    assert isinstance(reply, WorkflowsReply)
    assert [info.name for info in reply.workflows] == ["quick_check", "slow_plan"]


async def test_outcomes_of_a_mixed_command_batch_come_in_message_order(shell: Shell) -> None:
    await shell.command(submit(JOB_C))

    outcomes = await shell.commands(
        FakeMessage(b"not json"),
        message(GetJob(job_id=JOB_C), REPLY_QUEUE),
        submit(JOB_A),
        message(CancelJob(job_id=JOB_B)),
        message(ListWorkflows()),
        message(CancelJob(job_id=JOB_C)),
        submit(JOB_B, workflow="nope"),
    )

    assert [(o.verdict, o.event) for o in outcomes] == [
        (Verdict.DEAD_LETTER, "message_dead_lettered"),
        (Verdict.ACK, "job_queried"),
        (Verdict.ACK, "job_submitted"),
        (Verdict.ACK, "cancel_pending"),
        (Verdict.DEAD_LETTER, "message_dead_lettered"),
        (Verdict.ACK, "job_cancel_applied"),
        (Verdict.DEAD_LETTER, "message_dead_lettered"),
    ]
    assert outcomes[0].reason.startswith("invalid command")
    assert str(JOB_B) in outcomes[3].reason
    assert outcomes[4].reason.startswith("list_workflows without reply_to")
    assert "nope" in outcomes[6].reason
    assert shell.store.transactions == 2  # the first submission, then this whole batch


async def test_a_failed_command_batch_leaves_no_query_unawaited(shell: Shell) -> None:
    shell.store.fail_next_write(asyncpg.exceptions.DataError("bad value"))
    batch = (message(GetJob(job_id=JOB_A), REPLY_QUEUE), FakeMessage(b"{"), submit(JOB_A))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(asyncpg.exceptions.DataError):
            await shell.commands(*batch)
        gc.collect()

    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


# --- worker events ----------------------------------------------------------------------


async def test_events_of_a_job_are_applied(shell: Shell) -> None:
    await shell.command(submit(JOB_A))

    outcomes = await shell.events(started(JOB_A), succeeded(JOB_A))

    assert outcomes == [acked("event_applied"), acked("event_applied")]
    assert shell.store.job(JOB_A).status is JobStatus.SUCCEEDED


async def test_an_event_of_an_attempt_the_job_never_had_is_dead_lettered(shell: Shell) -> None:
    await shell.command(submit(JOB_A))

    outcome = await shell.event(started(JOB_A, attempt_id=first_attempt(JOB_B)))

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert "unknown attempt" in outcome.reason
    assert shell.store.history_types(JOB_A) == ["job_submitted", "step_dispatched"]


async def test_an_event_of_an_unknown_job_is_dead_lettered(shell: Shell) -> None:
    outcome = await shell.event(started(JOB_A))

    assert outcome == Outcome.dead(f"step_started for unknown job {JOB_A}")


async def test_a_stale_event_is_acked_as_ignored(shell: Shell) -> None:
    await shell.command(submit(JOB_A))
    await shell.events(started(JOB_A), succeeded(JOB_A))

    outcome = await shell.event(succeeded(JOB_A))

    assert outcome.verdict is Verdict.ACK
    assert outcome.event == "event_ignored"
    assert shell.store.history_types(JOB_A)[-1] == "event_ignored"


async def test_outcomes_of_a_mixed_event_batch_come_in_message_order(shell: Shell) -> None:
    await shell.commands(submit(JOB_A), submit(JOB_B))

    outcomes = await shell.events(
        started(JOB_B),
        FakeMessage(raw(type="step_started", job_id=str(JOB_A))),
        started(JOB_C),
        started(JOB_A),
        started(JOB_A, attempt_id=first_attempt(JOB_C)),
        succeeded(JOB_B),
    )

    assert [(o.verdict, o.event) for o in outcomes] == [
        (Verdict.ACK, "event_applied"),
        (Verdict.DEAD_LETTER, "message_dead_lettered"),
        (Verdict.DEAD_LETTER, "message_dead_lettered"),
        (Verdict.ACK, "event_applied"),
        (Verdict.DEAD_LETTER, "message_dead_lettered"),
        (Verdict.ACK, "event_applied"),
    ]
    assert outcomes[1].reason.startswith("invalid event: ")
    assert "unknown job" in outcomes[2].reason
    assert "unknown attempt" in outcomes[4].reason
    assert shell.store.job(JOB_A).status is JobStatus.RUNNING
    assert shell.store.job(JOB_B).status is JobStatus.SUCCEEDED


async def test_a_poison_job_in_a_batch_of_events_fails_only_its_own_message(
    shell: Shell,
) -> None:
    await shell.commands(submit(JOB_A), submit(JOB_B), submit(JOB_C))
    shell.store.fail_writes_of(JOB_B, lambda: asyncpg.exceptions.DataError("bad value"))
    dead_letters = FakePublisher()
    boundary = ConsumeBoundary(
        cast(ConfirmedPublisher, dead_letters),
        NAMES.dead_exchange,
        retry_delay_s=0,
        is_transient=is_transient,
    )
    batch = [started(JOB_A), started(JOB_B), started(JOB_C)]

    await boundary.settle_batch(NAMES.events_queue, incoming(batch), shell.handlers.on_events)

    assert [m.settled for m in batch] == [["ack"], ["ack"], ["ack"]]
    assert shell.store.job(JOB_A).status is JobStatus.RUNNING
    assert shell.store.job(JOB_C).status is JobStatus.RUNNING
    assert shell.store.job(JOB_B).status is JobStatus.QUEUED
    (dead,) = dead_letters.published
    assert dead.body == batch[1].body
    assert "DataError" in dead.headers["x-segue-reason"]


async def test_batches_handled_at_once_keep_the_order_of_one_job_s_commands(
    shell: Shell,
) -> None:
    # The cancel's batch is slow to write; a retry sent after it, in a batch handled
    # meanwhile, must wait for it (and so is judged on the cancelled job, not on the
    # running one), while a batch about another job goes on at once.
    await shell.command(submit(JOB_A))
    release = asyncio.Event()
    shell.store.before_next_write(release.wait)
    cancel = asyncio.create_task(shell.commands(message(CancelJob(job_id=JOB_A, reason="stop"))))
    await asyncio.sleep(0)  # the cancel's batch is taken first
    retry = asyncio.create_task(
        shell.commands(message(RetryJob(job_id=JOB_A), REPLY_QUEUE, "corr-r"))
    )
    other = await asyncio.wait_for(shell.commands(submit(JOB_B)), 1)
    assert other == [acked("job_submitted")]
    assert not retry.done()
    release.set()
    assert (await cancel)[0].verdict is Verdict.ACK
    (refused,) = await retry
    assert refused.event == "retry_refused"
    assert refused.reason.endswith("job is cancelled")
