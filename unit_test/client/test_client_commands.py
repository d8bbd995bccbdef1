"""What the client sends and how it takes the answers, on a fake channel (no broker):
every command carries the connection's user, a follow binds the user's own
updates, and a refusal on ownership raises :class:`ForbiddenError`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.abc import AbstractRobustConnection as Connection
from pamqp.commands import Basic
from pydantic import BaseModel

from segue.client import ForbiddenError, RequestFailedError, SegueClient
from segue.client.client import _Session
from segue.protocol import kinds
from segue.protocol.codec import COMMAND_ADAPTER, decode, encode
from segue.protocol.messages import (
    CancelJob,
    Command,
    ErrorInfo,
    ErrorReply,
    GetJob,
    JobReply,
    JobStatus,
    JobView,
    RetryJob,
    SubmitJob,
)
from segue.protocol.names import ANY_OWNER_JOB_UPDATES, Names, job_updates_binding

NOW = datetime(2025, 1, 1, tzinfo=UTC)
NAMES = Names("segue")
Answer = Callable[[Command], BaseModel]


@dataclass
class Delivery:
    """What the client's consumer reads of a message."""

    body: bytes
    correlation_id: str | None = None
    message_id: str | None = None


@dataclass
class Sent:
    command: Command
    properties: Basic.Properties


@dataclass
class FakeBroker:
    """The client's channel and reply queue: records publishes and bindings, and
    answers each query with ``answer`` on the client's consumer."""

    client: SegueClient
    answer: Answer
    queue_name: str = NAMES.reply_queue_prefix("alice") + "0123"
    sent: list[Sent] = field(default_factory=list)
    bindings: set[str] = field(default_factory=set)
    reconnect_callbacks: set[object] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.queue_name

    async def get_underlay_channel(self) -> FakeBroker:
        return self

    async def basic_publish(
        self, body: bytes, *, properties: Basic.Properties, **_: Any
    ) -> Basic.Ack:
        """Record the command, answer it if asked to, and confirm it as a broker does."""
        command = decode(COMMAND_ADAPTER, body)
        self.sent.append(Sent(command, properties))
        if properties.reply_to:
            reply = encode(self.answer(command))
            delivery = Delivery(reply, correlation_id=properties.correlation_id)
            message = cast(AbstractIncomingMessage, delivery)
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self.client._on_message(message))
            )
        return Basic.Ack()

    async def bind(self, _exchange: str, routing_key: str) -> None:
        self.bindings.add(routing_key)

    async def unbind(self, _exchange: str, routing_key: str) -> None:
        self.bindings.discard(routing_key)

    async def close(self) -> None:
        pass


def connected(answer: Answer, *, user: str = "alice", admin: bool = False) -> FakeBroker:
    """A client of ``user`` on a fake broker (test-only access: the session is set
    as :meth:`SegueClient.connect` would)."""
    client = SegueClient(request_timeout_s=1, admin=admin)
    broker = FakeBroker(client, answer)
    client._session = _Session(
        cast(Connection, broker),
        cast(AbstractChannel, broker),
        cast(AbstractQueue, broker),
        NAMES,
        f"client.{user}.abc",
        user,
    )
    return broker


def view(job_id: UUID, status: JobStatus) -> JobView:
    return JobView.model_validate(
        {
            "job_id": job_id,
            "workflow": "energy_plan",
            "workflow_version": "1",
            "workflow_hash": "h",
            "status": status,
            "priority": 5,
            "reference": None,
            "owner": "alice",
            "params": {},
            "current_step": None,
            "outputs": {},
            "error": None,
            "created_at": NOW,
            "updated_at": NOW,
            "finished_at": None,
        }
    )


def answer_running(command: Command) -> BaseModel:
    assert isinstance(command, GetJob | RetryJob)
    return JobReply(job_id=command.job_id, job=view(command.job_id, JobStatus.RUNNING))


def forbid(command: Command) -> BaseModel:
    message = f"user 'bob' may not touch job {getattr(command, 'job_id', '?')}"
    return ErrorReply(error=ErrorInfo(kind=kinds.FORBIDDEN, message=message))


async def test_commands_carry_the_connection_user_as_user_id() -> None:
    broker = connected(answer_running, user="alice")
    client = broker.client
    job = await client.submit("energy_plan", {"horizon_years": 5})
    await client.cancel(job.job_id)
    await client.get(job.job_id)
    await client.retry(job.job_id)

    assert [type(sent.command) for sent in broker.sent] == [SubmitJob, CancelJob, GetJob, RetryJob]
    assert {sent.properties.user_id for sent in broker.sent} == {"alice"}
    replies_to = {sent.properties.reply_to for sent in broker.sent} - {None}
    assert replies_to == {broker.name}
    assert broker.name.startswith("segue.reply.alice.")
    submit = broker.sent[0].command
    assert isinstance(submit, SubmitJob)
    assert submit.updates_key == "client.alice.abc"


async def test_following_binds_the_users_own_updates_of_the_job() -> None:
    broker = connected(answer_running, user="alice")
    job_id = uuid4()
    await broker.client.follow(job_id)
    assert broker.bindings == {job_updates_binding(job_id, owner="alice")}
    assert job_updates_binding(job_id, owner="alice") == f"client.alice.job.{job_id}.*"


async def test_an_admin_follows_the_job_whoever_owns_it() -> None:
    broker = connected(answer_running, user="root", admin=True)
    job_id = uuid4()
    await broker.client.follow(job_id)
    assert broker.bindings == {ANY_OWNER_JOB_UPDATES.format(job_id=job_id)}


@pytest.mark.parametrize("call", ["get", "retry"])
async def test_a_forbidden_answer_raises_forbidden_error(call: str) -> None:
    client = connected(forbid, user="bob").client
    job_id = uuid4()
    request = client.get(job_id) if call == "get" else client.retry(job_id)
    with pytest.raises(ForbiddenError, match="may not touch") as caught:
        await request
    assert isinstance(caught.value, RequestFailedError)
    assert caught.value.error.kind == kinds.FORBIDDEN


async def test_other_error_answers_stay_request_failed_errors() -> None:
    def unknown(command: Command) -> BaseModel:
        return ErrorReply(error=ErrorInfo(kind=kinds.UNKNOWN_JOB, message="no such job"))

    client = connected(unknown).client
    with pytest.raises(RequestFailedError, match="no such job") as caught:
        await client.retry(uuid4())
    assert not isinstance(caught.value, ForbiddenError)


async def test_the_result_of_a_job_of_another_user_fails_at_once() -> None:
    broker = connected(forbid, user="bob")
    handle = await broker.client.follow(uuid4())
    with pytest.raises(ForbiddenError):
        await asyncio.wait_for(handle.result(timeout=5), 2)
    await asyncio.sleep(0.05)
    queries = [sent for sent in broker.sent if isinstance(sent.command, GetJob)]
    assert len(queries) == 1, "a refusal is not asked again in the background"
    assert not broker.client._resyncs
