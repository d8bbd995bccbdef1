"""The Celery bridge's handlers on fakes: dispatch, START counting, events, stops and
liveness, with no broker and no database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from segue.broker.boundary import Verdict
from segue.omotes.celery_handlers import CeleryHandlers
from segue.omotes.celery_wire import AmqpMessage
from segue.omotes.store import OmotesInput, OmotesOutput, OutputJobGoneError
from segue.omotes.wire.omotes_wire_pb2 import TaskProgressUpdate, TaskResult
from segue.omotes.worker_translate import TaskRecord
from segue.protocol.codec import encode
from segue.protocol.messages import (
    CancelAttempt,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    StepTask,
    WorkerEvent,
)
from segue.protocol.tokens import token_digest
from segue.workflows.loader import parse_workflows

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TOKEN = "secret-token"
CATALOG = parse_workflows(
    [{"workflow_type_name": "simulator", "workflow_type_description_name": "Simulation"}]
)


class FakeLedger:
    """``omotes_tasks`` in memory; ``live`` are the attempts Segue still runs."""

    def __init__(self) -> None:
        self.records: dict[UUID, TaskRecord] = {}
        self.published: set[UUID] = set()
        self.live: set[UUID] = set()

    async def record(self, task: StepTask) -> bool:
        self.records.setdefault(
            task.attempt_id,
            TaskRecord(task.attempt_id, task.job_id, task.queue, task.token, task.heartbeat_s),
        )
        return task.attempt_id in self.published

    async def mark_published(self, attempt_id: UUID) -> None:
        if attempt_id in self.records:
            self.published.add(attempt_id)

    @asynccontextmanager
    async def start(self, attempt_id: UUID, job_id: UUID) -> AsyncIterator[TaskRecord | None]:
        before = self.records.get(attempt_id)
        if before is None or before.job_id != job_id:
            yield None
            return
        counted = replace(before, starts=before.starts + 1)
        self.records[attempt_id] = counted
        try:
            yield counted
        except BaseException:
            self.records[attempt_id] = before  # rolled back
            raise

    async def get(self, attempt_id: UUID) -> TaskRecord | None:
        return self.records.get(attempt_id)

    async def forget(self, attempt_id: UUID) -> TaskRecord | None:
        return self.records.pop(attempt_id, None)

    async def running(self) -> list[TaskRecord]:
        return [record for record in self.records.values() if record.starts > 0]

    async def attempt_live(self, attempt_id: UUID) -> bool:
        return attempt_id in self.live

    async def prune(self, recorded_before: datetime, limit: int = 500) -> list[TaskRecord]:
        ended = [r for r in self.records.values() if r.attempt_id not in self.live][:limit]
        for record in ended:
            del self.records[record.attempt_id]
        return ended


class FakeInputs:
    def __init__(self, *inputs: OmotesInput) -> None:
        self.inputs = {row.job_id: row for row in inputs}

    async def get(self, job_id: UUID) -> OmotesInput | None:
        return self.inputs.get(job_id)


class FakeOutputs:
    """``omotes_outputs`` in memory; ``jobs``: the jobs that exist (None: every job)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[UUID, UUID], bytes] = {}
        self.saves = 0
        self.jobs: set[UUID] | None = None

    async def save(self, output: OmotesOutput) -> None:
        self.saves += 1
        if self.jobs is not None and output.job_id not in self.jobs:
            raise OutputJobGoneError(f"job {output.job_id} does not exist")
        self.rows.setdefault((output.job_id, output.attempt_id), output.esdl)


class FakeCelery:
    origin = "segue1@test"

    def __init__(self) -> None:
        self.sent: list[tuple[str, AmqpMessage]] = []
        self.revoked: list[str] = []
        self.active: set[str] = set()
        self.inspections = 0

    async def send_task(self, name: str, message: AmqpMessage) -> None:
        self.sent.append((name, message))

    async def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)

    async def active_tasks(self, window_s: float) -> set[str]:
        self.inspections += 1
        return set(self.active)


class FakeSink:
    def __init__(self) -> None:
        self.events: list[WorkerEvent] = []
        self.failing = False

    async def send(self, event: WorkerEvent) -> bool:
        self.events.append(event)
        return True

    async def send_once(self, event: WorkerEvent) -> bool:
        self.events.append(event)
        return True

    async def send_or_raise(self, event: WorkerEvent) -> None:
        if self.failing:
            raise ConnectionError("the broker went away")
        self.events.append(event)


class Bridge:
    """Handlers on fakes, with one task of one job."""

    def __init__(self, heartbeat_s: float | None = 60.0) -> None:
        self.ledger = FakeLedger()
        self.celery = FakeCelery()
        self.sink = FakeSink()
        self.outputs = FakeOutputs()
        self.job_id, self.attempt_id = uuid4(), uuid4()
        inputs = FakeInputs(OmotesInput(self.job_id, "<esdl/>", "ref"))
        self.handlers = CeleryHandlers(
            self.ledger,
            inputs,
            self.outputs,
            self.celery,
            self.sink,
            CATALOG,
            lambda: NOW,
            1_000_000,
        )
        self.task = StepTask(
            job_id=self.job_id,
            workflow="simulator",
            step="simulator",
            queue="simulator",
            attempt=1,
            attempt_id=self.attempt_id,
            token=TOKEN,
            heartbeat_s=heartbeat_s,
        )

    async def dispatch(self) -> Verdict:
        outcome = await self.handlers.on_task(encode(self.task), 6)
        self.ledger.live.add(self.attempt_id)
        return outcome.verdict

    def start_message(self, job_id: UUID | None = None) -> bytes:
        return TaskProgressUpdate(
            job_id=str(job_id or self.job_id),
            celery_task_id=str(self.attempt_id),
            celery_task_type="simulator",
            status=TaskProgressUpdate.START,
            message="Started job at worker.",
        ).SerializeToString()

    def stop(self, digest: str | None = None, worker_id: str | None = None) -> CancelAttempt:
        return CancelAttempt(
            job_id=self.job_id,
            attempt_id=self.attempt_id,
            reason="cancelled",
            worker_id=worker_id,
            token_digest=token_digest(TOKEN) if digest is None else digest,
        )


async def test_a_task_is_published_once_as_a_celery_task_then_acknowledged() -> None:
    bridge = Bridge()

    assert await bridge.dispatch() is Verdict.ACK
    assert await bridge.dispatch() is Verdict.ACK  # the Segue task again: not published again

    [(name, message)] = bridge.celery.sent
    assert name == "simulator"
    assert message.headers["id"] == str(bridge.attempt_id)
    assert message.priority == 6
    assert json.loads(message.body)[0] == [str(bridge.job_id), "ref", "<esdl/>", {}]
    assert bridge.ledger.published == {bridge.attempt_id}


async def test_a_task_whose_attempt_was_stopped_before_it_came_is_not_published() -> None:
    bridge = Bridge()

    await bridge.handlers.on_stop(bridge.stop())
    outcome = await bridge.handlers.on_task(encode(bridge.task), 5)

    assert (outcome.verdict, outcome.event) == (Verdict.ACK, "omotes_task_cancelled")
    assert bridge.celery.sent == []


async def test_an_undecodable_task_is_dead_lettered() -> None:
    outcome = await Bridge().handlers.on_task(b'{"type": "step_task"}', 5)

    assert outcome.verdict is Verdict.DEAD_LETTER


async def test_every_start_after_the_first_is_reported_as_a_redelivery_by_a_new_run() -> None:
    bridge = Bridge()
    await bridge.dispatch()

    for _ in range(2):
        assert (await bridge.handlers.on_progress(bridge.start_message())).verdict is Verdict.ACK

    first, second = bridge.sink.events
    assert isinstance(first, StepStarted)
    assert isinstance(second, StepStarted)
    assert (first.worker_id, first.redelivered) == (f"celery:{bridge.attempt_id}:1", False)
    assert (second.worker_id, second.redelivered) == (f"celery:{bridge.attempt_id}:2", True)
    assert second.token == TOKEN


async def test_a_start_whose_report_failed_is_not_counted_when_it_comes_again() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    bridge.sink.failing = True

    with pytest.raises(ConnectionError):
        await bridge.handlers.on_progress(bridge.start_message())
    bridge.sink.failing = False
    await bridge.handlers.on_progress(bridge.start_message())

    [event] = bridge.sink.events
    assert isinstance(event, StepStarted)
    assert not event.redelivered


@pytest.mark.parametrize("of_other_job", [False, True])
async def test_a_start_of_a_task_nobody_waits_for_is_revoked(of_other_job: bool) -> None:
    bridge = Bridge()
    if of_other_job:
        await bridge.dispatch()

    outcome = await bridge.handlers.on_progress(bridge.start_message(job_id=uuid4()))

    assert outcome.event == "omotes_event_dropped"
    assert bridge.celery.revoked == [str(bridge.attempt_id)]
    assert bridge.sink.events == []


async def test_progress_and_the_result_are_reported_then_the_task_forgotten() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    await bridge.handlers.on_progress(bridge.start_message())
    progress = TaskProgressUpdate(
        job_id=str(bridge.job_id), celery_task_id=str(bridge.attempt_id), progress=0.5, message="m"
    )
    result = TaskResult(
        job_id=str(bridge.job_id),
        celery_task_id=str(bridge.attempt_id),
        result_type=TaskResult.SUCCEEDED,
        output_esdl="<out/>",
        logs="ok",
    )

    await bridge.handlers.on_progress(progress.SerializeToString())
    await bridge.handlers.on_result(result.SerializeToString())
    late = await bridge.handlers.on_progress(progress.SerializeToString())

    _, progressed, succeeded = bridge.sink.events
    assert isinstance(progressed, StepProgressed)
    assert progressed.fraction == 0.5
    assert isinstance(succeeded, StepSucceeded)
    assert succeeded.output["output_esdl_ref"] == str(bridge.attempt_id)
    assert bridge.outputs.rows == {(bridge.job_id, bridge.attempt_id): b"<out/>"}
    assert bridge.ledger.records == {}
    assert late.event == "omotes_event_dropped"  # e.g. "Calculation finished." after the result
    assert bridge.celery.revoked == []


def succeeded_result(bridge: Bridge, esdl: str) -> bytes:
    return TaskResult(
        job_id=str(bridge.job_id),
        celery_task_id=str(bridge.attempt_id),
        result_type=TaskResult.SUCCEEDED,
        output_esdl=esdl,
    ).SerializeToString()


async def test_the_output_esdl_is_stored_before_the_success_is_reported_and_only_once() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    await bridge.handlers.on_progress(bridge.start_message())
    bridge.sink.failing = True

    with pytest.raises(ConnectionError):  # the report failed: the result comes again
        await bridge.handlers.on_result(succeeded_result(bridge, "<first/>"))
    stored_before_report = dict(bridge.outputs.rows)
    bridge.sink.failing = False
    outcome = await bridge.handlers.on_result(succeeded_result(bridge, "<first/>"))

    assert stored_before_report == {(bridge.job_id, bridge.attempt_id): b"<first/>"}
    assert outcome.verdict is Verdict.ACK
    assert bridge.outputs.saves == 2
    assert bridge.outputs.rows == stored_before_report  # one row, as it was
    _, succeeded = bridge.sink.events
    assert isinstance(succeeded, StepSucceeded)
    assert succeeded.output["output_esdl_bytes"] == len(b"<first/>")


async def test_the_result_of_a_job_that_is_gone_is_dropped() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    bridge.outputs.jobs = set()  # retention deleted the job

    outcome = await bridge.handlers.on_result(succeeded_result(bridge, "<late/>"))

    assert (outcome.verdict, outcome.event) == (Verdict.ACK, "omotes_event_dropped")
    assert bridge.sink.events == []
    assert bridge.ledger.records == {}


async def test_a_body_that_is_no_protobuf_of_its_kind_is_dead_lettered() -> None:
    bridge = Bridge()

    assert (await bridge.handlers.on_result(b"\xff\xff\xff")).verdict is Verdict.DEAD_LETTER


async def test_a_stop_of_an_attempt_that_ended_revokes_its_task() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    await bridge.handlers.on_progress(bridge.start_message())
    bridge.ledger.live.clear()  # Segue ended the attempt, then sent the stop

    await bridge.handlers.on_stop(bridge.stop(worker_id=f"celery:{bridge.attempt_id}:1"))

    assert bridge.celery.revoked == [str(bridge.attempt_id)]
    assert bridge.ledger.records == {}


async def test_a_stop_of_an_attempt_still_running_is_about_an_earlier_run_and_ignored() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    for _ in range(2):
        await bridge.handlers.on_progress(bridge.start_message())

    await bridge.handlers.on_stop(bridge.stop(worker_id=f"celery:{bridge.attempt_id}:1"))

    assert bridge.celery.revoked == []
    assert bridge.attempt_id in bridge.ledger.records


async def test_a_stop_without_the_tokens_digest_is_ignored() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    bridge.ledger.live.clear()

    await bridge.handlers.on_stop(bridge.stop(digest=token_digest("guessed")))

    assert bridge.celery.revoked == []


async def test_a_running_task_gets_heartbeats_while_a_worker_runs_it() -> None:
    bridge = Bridge(heartbeat_s=6.0)
    await bridge.dispatch()
    await bridge.handlers.on_progress(bridge.start_message())
    bridge.celery.active = {str(bridge.attempt_id)}

    await bridge.handlers.beat(now=100.0, window_s=0.1)
    await bridge.handlers.beat(now=101.0, window_s=0.1)  # not due again for 2 s
    bridge.celery.active = set()  # its worker is gone
    await bridge.handlers.beat(now=102.5, window_s=0.1)

    beats = [event for event in bridge.sink.events if isinstance(event, StepHeartbeat)]
    assert len(beats) == 1
    assert (beats[0].worker_id, beats[0].token) == (f"celery:{bridge.attempt_id}:1", TOKEN)
    assert bridge.celery.inspections == 2


async def test_steps_without_a_heartbeat_limit_need_no_inspection() -> None:
    bridge = Bridge(heartbeat_s=None)
    await bridge.dispatch()
    await bridge.handlers.on_progress(bridge.start_message())

    await bridge.handlers.beat(now=100.0, window_s=0.1)

    assert bridge.celery.inspections == 0


async def test_records_of_ended_attempts_are_pruned_and_their_tasks_revoked() -> None:
    bridge = Bridge()
    await bridge.dispatch()
    bridge.ledger.live.clear()

    pruned = await bridge.handlers.prune()

    assert [record.attempt_id for record in pruned] == [bridge.attempt_id]
    assert bridge.celery.revoked == [str(bridge.attempt_id)]
