"""Who may do what, and reports that must be fenced or coalesced: the handlers on
the real applier over fakes, with jobs that have secrets and owners."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import pytest
from pydantic import BaseModel

from fakes import Clock, FakeJobStore, FakeMessage, FakePublisher, FakeSender, incoming
from segue.broker.boundary import Outcome, Verdict
from segue.engine.state import Job, attempt_token
from segue.protocol import kinds
from segue.protocol.codec import REPLY_ADAPTER, TASK_ADAPTER, decode
from segue.protocol.messages import (
    CancelJob,
    ErrorReply,
    GetJob,
    JobReply,
    JobStatus,
    ListWorkflows,
    Reply,
    RetryJob,
    StepHeartbeat,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    StepTask,
    SubmitJob,
)
from segue.protocol.names import client_updates_key
from segue.service.applier import Applier
from segue.service.failures import is_transient
from segue.service.handlers import Handlers
from segue.service.lag import Backlog, EventsHorizon, share_horizon
from shell_builders import NAMES, body, catalog

JOB = UUID("00000000-0000-4000-8000-0000000000a1")
ALICE, BOB, ADMIN = "alice", "bob", "root"


@dataclass
class Shell:
    store: FakeJobStore
    sender: FakeSender
    publisher: FakePublisher
    handlers: Handlers
    clock: Clock
    horizon: EventsHorizon

    async def command(self, message: FakeMessage) -> Outcome:
        (outcome,) = await self.handlers.on_commands(incoming([message]))
        return outcome

    async def events(self, *messages: FakeMessage) -> list[Outcome]:
        return list(await self.handlers.on_events(incoming(messages)))

    def job(self) -> Job:
        return self.store.job(JOB)

    def task(self) -> StepTask:
        (task,) = [
            decode(TASK_ADAPTER, m.body)
            for m in self.sender.messages
            if m.exchange == NAMES.tasks_exchange
        ]
        return task

    def replies_to(self, queue: str) -> list[Reply]:
        return [decode(REPLY_ADAPTER, m.body) for m in self.publisher.to(queue)]


@pytest.fixture
def shell() -> Shell:
    store, sender, publisher, clock = FakeJobStore(), FakeSender(), FakePublisher(), Clock()
    horizon = EventsHorizon(clock, max_lag_s=600)
    applier = Applier(store, sender, NAMES, clock, is_transient, horizon=horizon)
    handlers = Handlers(
        applier,
        store,
        catalog(),
        publisher,
        NAMES,
        clock,
        100_000,
        admins=frozenset({ADMIN}),
        horizon=horizon,
    )
    return Shell(store, sender, publisher, handlers, clock, horizon)


def sent_by(user: str | None, model: BaseModel, reply_to: str | None = None) -> FakeMessage:
    return FakeMessage(body(model), user_id=user, reply_to=reply_to, correlation_id="c-1")


def reply_queue(user: str | None) -> str:
    return NAMES.reply_queue_prefix(user) + "r1"


async def submitted_by_alice(shell: Shell) -> StepTask:
    key = client_updates_key("c1", ALICE)
    outcome = await shell.command(
        sent_by(ALICE, SubmitJob(job_id=JOB, workflow="quick_check", updates_key=key))
    )
    assert outcome.event == "job_submitted"
    return shell.task()


def report(task: StepTask, model: type[BaseModel], **fields: object) -> FakeMessage:
    values: dict[str, object] = {
        "job_id": task.job_id,
        "attempt_id": task.attempt_id,
        "worker_id": "w1",
        "token": task.token,
        "sent_at": None,
    }
    values.update(fields)
    return FakeMessage(body(model(**values)))


# --- owners and admins -------------------------------------------------------------------


async def test_the_submitting_user_owns_the_job_and_the_job_has_a_secret(shell: Shell) -> None:
    task = await submitted_by_alice(shell)

    job = shell.job()
    assert job.owner == ALICE
    assert job.secret is not None
    assert task.token == attempt_token(job, task.attempt_id)
    assert task.attempt_id.version == 4  # random-looking, not derived from the job id


async def test_another_user_cannot_cancel_a_job_but_its_owner_and_an_admin_can(
    shell: Shell,
) -> None:
    await submitted_by_alice(shell)

    refused = await shell.command(sent_by(BOB, CancelJob(job_id=JOB)))
    assert refused.verdict is Verdict.DEAD_LETTER
    assert "'bob' may not cancel" in refused.reason
    assert shell.job().status is JobStatus.QUEUED

    anonymous = await shell.command(sent_by(None, CancelJob(job_id=JOB)))
    assert anonymous.verdict is Verdict.DEAD_LETTER

    by_admin = await shell.command(sent_by(ADMIN, CancelJob(job_id=JOB)))
    assert by_admin.event == "job_cancel_applied"
    assert shell.job().status is JobStatus.CANCELLED


async def test_the_owner_may_cancel_its_job(shell: Shell) -> None:
    await submitted_by_alice(shell)

    outcome = await shell.command(sent_by(ALICE, CancelJob(job_id=JOB)))

    assert outcome.event == "job_cancel_applied"


async def test_a_retry_by_another_user_is_answered_forbidden_and_dead_lettered(
    shell: Shell,
) -> None:
    task = await submitted_by_alice(shell)
    await shell.events(
        report(task, StepStarted), report(task, StepSucceeded, output={})
    )  # now succeeded: a retry by alice would be refused as not failed; bob never gets that far

    outcome = await shell.command(sent_by(BOB, RetryJob(job_id=JOB), reply_queue(BOB)))

    assert outcome.verdict is Verdict.DEAD_LETTER
    (reply,) = shell.replies_to(reply_queue(BOB))
    assert isinstance(reply, ErrorReply)
    assert reply.error.kind == kinds.FORBIDDEN


async def test_get_job_by_another_user_is_answered_forbidden(shell: Shell) -> None:
    await submitted_by_alice(shell)

    refused = await shell.command(sent_by(BOB, GetJob(job_id=JOB), reply_queue(BOB)))
    allowed = await shell.command(sent_by(ALICE, GetJob(job_id=JOB), reply_queue(ALICE)))
    by_admin = await shell.command(sent_by(ADMIN, GetJob(job_id=JOB), reply_queue(ADMIN)))

    assert refused.verdict is Verdict.DEAD_LETTER
    (bob_reply,) = shell.replies_to(reply_queue(BOB))
    assert isinstance(bob_reply, ErrorReply)
    assert bob_reply.error.kind == kinds.FORBIDDEN
    assert (allowed.event, by_admin.event) == ("job_queried", "job_queried")
    (alice_reply,) = shell.replies_to(reply_queue(ALICE))
    assert isinstance(alice_reply, JobReply)
    assert alice_reply.job is not None
    assert alice_reply.job.owner == ALICE


async def test_no_answer_goes_to_a_queue_that_is_not_the_caller_s_own(shell: Shell) -> None:
    await submitted_by_alice(shell)

    into_alice = await shell.command(sent_by(BOB, ListWorkflows(), reply_queue(ALICE)))
    into_tasks = await shell.command(sent_by(BOB, GetJob(job_id=JOB), "test.task.q-check"))
    direct = await shell.command(sent_by(BOB, ListWorkflows(), "amq.rabbitmq.reply-to.g2d"))

    assert into_alice.verdict is Verdict.DEAD_LETTER
    assert "not a reply queue of user 'bob'" in into_alice.reason
    assert into_tasks.verdict is Verdict.DEAD_LETTER
    assert shell.replies_to(reply_queue(ALICE)) == []
    assert shell.publisher.to("test.task.q-check") == []
    assert direct.event == "workflows_listed"


async def test_a_submission_routing_its_updates_to_another_user_is_refused(
    shell: Shell,
) -> None:
    key = client_updates_key("c1", ALICE)

    outcome = await shell.command(
        sent_by(BOB, SubmitJob(job_id=JOB, workflow="quick_check", updates_key=key))
    )

    assert outcome.verdict is Verdict.DEAD_LETTER
    assert "belongs to another user" in outcome.reason
    assert shell.store.jobs == {}


async def test_updates_of_an_owned_job_are_routed_under_its_owner(shell: Shell) -> None:
    await submitted_by_alice(shell)

    (status,) = [m for m in shell.sender.notices if m.exchange == NAMES.updates_exchange]

    assert status.routing_key == f"client.{ALICE}.job.{JOB}.status"
    assert status.headers["CC"] == [client_updates_key("c1", ALICE)]


# --- tokens, fencing and coalescing ---------------------------------------------------


async def test_a_report_without_the_attempt_token_is_dead_lettered(shell: Shell) -> None:
    task = await submitted_by_alice(shell)

    forged = await shell.events(report(task, StepSucceeded, output={"forged": True}, token=None))
    wrong = await shell.events(report(task, StepSucceeded, output={}, token="0" * 32))

    assert [o.verdict for o in forged + wrong] == [Verdict.DEAD_LETTER] * 2
    assert "without the attempt's token" in forged[0].reason
    assert shell.job().status is JobStatus.QUEUED


async def test_a_started_of_a_second_worker_is_answered_with_a_stop_for_it(
    shell: Shell,
) -> None:
    task = await submitted_by_alice(shell)
    await shell.events(report(task, StepStarted, worker_id="w1"))
    shell.sender.rows.clear()

    (outcome,) = await shell.events(report(task, StepStarted, worker_id="w2"))

    assert outcome.event == "event_ignored"
    (stop,) = [m for m in shell.sender.messages if m.exchange == NAMES.control_exchange]
    assert b'"worker_id":"w2"' in stop.body
    assert shell.job().attempts[0].worker_id == "w1"


async def test_earlier_heartbeats_and_progress_of_a_batch_are_coalesced(shell: Shell) -> None:
    task = await submitted_by_alice(shell)
    await shell.events(report(task, StepStarted))

    outcomes = await shell.events(
        report(task, StepHeartbeat),
        report(task, StepProgressed, fraction=0.1, message="a"),
        report(task, StepProgressed, fraction=0.2, message="b"),
        report(task, StepHeartbeat),
        report(task, StepProgressed, fraction=0.3, message="c"),
    )

    assert [o.event for o in outcomes] == ["event_coalesced"] * 4 + ["event_applied"]
    assert shell.job().attempts[0].progress == 0.3
    assert shell.store.history_types(JOB).count("step_progress") == 1


class Waiting:
    """What a fake broker and consumer say waits."""

    def __init__(self, backlog: Backlog | Exception) -> None:
        self.backlog = backlog

    async def __call__(self) -> Backlog:
        if isinstance(self.backlog, Exception):
            raise self.backlog
        return self.backlog


async def test_the_horizon_holds_at_the_oldest_send_time_while_a_batch_is_handled(
    shell: Shell,
) -> None:
    now = shell.clock()
    old = now - timedelta(seconds=45)
    horizon = EventsHorizon(shell.clock, max_lag_s=600, backlog=Waiting(Backlog(0, 0)))

    assert horizon() == now - timedelta(seconds=600)  # not consuming: what waits is unknown
    horizon.consuming()
    assert horizon() == now - timedelta(seconds=600)  # nobody asked the broker yet
    await horizon.refresh()
    assert horizon() == now  # nothing waits
    with horizon.handling([now, old, None]):
        assert horizon() == old
        assert horizon.lag_s() == 45
    assert horizon() == now
    with horizon.handling([now - timedelta(hours=2)]):
        assert horizon() == now - timedelta(seconds=600)  # bounded
    with horizon.handling([now + timedelta(hours=1)]):
        assert horizon() == now  # a worker clock ahead never moves it past now


async def test_while_events_are_ready_the_horizon_is_the_newest_send_time_handled(
    shell: Shell,
) -> None:
    now = shell.clock()
    waiting = Waiting(Backlog(ready=3, held=0))
    horizon = EventsHorizon(shell.clock, max_lag_s=600, backlog=waiting)
    horizon.consuming()
    with horizon.handling([now - timedelta(seconds=30), now - timedelta(seconds=20)]):
        pass
    await horizon.refresh()

    assert horizon() == now - timedelta(seconds=20), "a frozen or busy consumer: events wait"
    waiting.backlog = Backlog(0, 0)
    await horizon.refresh()
    assert horizon() == now


async def test_a_failed_batch_does_not_move_the_horizon(shell: Shell) -> None:
    now = shell.clock()
    horizon = EventsHorizon(shell.clock, max_lag_s=600, backlog=Waiting(Backlog(5, 0)))
    horizon.consuming()
    with horizon.handling([now - timedelta(seconds=50)]):
        pass
    with pytest.raises(RuntimeError), horizon.handling([now - timedelta(seconds=10)]):
        raise RuntimeError("the database went away")  # its events go back to the queue
    await horizon.refresh()

    assert horizon() == now - timedelta(seconds=50)


async def test_events_held_or_given_back_hold_the_horizon_at_their_send_time(
    shell: Shell,
) -> None:
    now = shell.clock()
    returned = now - timedelta(seconds=40)  # given back by a failed batch: older than others
    waiting = Waiting(Backlog(ready=0, held=2, oldest_held=returned))
    horizon = EventsHorizon(shell.clock, max_lag_s=600, backlog=waiting)
    horizon.consuming()
    with horizon.handling([now - timedelta(seconds=2)]):
        pass
    await horizon.refresh()
    assert horizon() == returned

    waiting.backlog = Backlog(ready=0, held=1, oldest_held=None, held_known=False)
    await horizon.refresh()
    assert horizon() == now - timedelta(seconds=600), "an event without a send time: unknown"

    waiting.backlog = Backlog(0, 0)
    await horizon.refresh()
    assert horizon() == now


async def test_a_broker_that_cannot_be_asked_means_anything_may_wait(shell: Shell) -> None:
    now = shell.clock()
    horizon = EventsHorizon(
        shell.clock, max_lag_s=600, backlog=Waiting(ConnectionError("broker away"))
    )
    horizon.consuming()
    await horizon.refresh()

    assert horizon() == now - timedelta(seconds=600)


class Published:
    """A fake store that keeps what a replica published of its horizon."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, datetime, int | None, int | None]] = []

    async def publish_horizon(
        self,
        replica_id: str,
        horizon: datetime,
        ready: int | None = None,
        consumers: int | None = None,
    ) -> None:
        self.rows.append((replica_id, horizon, ready, consumers))


async def test_a_replica_publishes_its_horizon_with_what_the_broker_said_waits(
    shell: Shell,
) -> None:
    """What the broker said (nothing ready, how many consumers) goes with the horizon:
    it is what releases a replica that fell silent (see SHARED_HORIZON_SQL)."""
    now = shell.clock()
    waiting = Waiting(Backlog(ready=0, held=0, consumers=2))
    horizon = EventsHorizon(shell.clock, max_lag_s=600, backlog=waiting)
    store = Published()
    horizon.consuming()
    assert horizon.waiting is None
    assert horizon.floor() == now - timedelta(seconds=600)

    await share_horizon(horizon, store, "replica-a")
    waiting.backlog = ConnectionError("broker away")
    await share_horizon(horizon, store, "replica-a")

    assert store.rows == [
        ("replica-a", now, 0, 2),
        ("replica-a", now - timedelta(seconds=600), None, None),
    ]
