"""Users kept apart by RabbitMQ's permissions and the orchestrator's ownership checks.

Real RabbitMQ users get exactly the permissions of ``docs/security.md`` (see
:func:`grants`, and :func:`test_the_documented_permissions_are_the_tested_ones`):
the orchestrator and the worker run as users of their own, ``segue-alice`` and
``segue-bob`` are clients, and ``segue-admin`` is a client listed in
``SEGUE_ADMINS``. Users are created with ``rabbitmqctl`` (so it must manage the
broker of ``SEGUE_TEST_AMQP_URL``; run as root), for this test's namespace,
and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelPreconditionFailed
from aiormq.exceptions import ChannelAccessRefused

from segue.broker.boundary import REASON_HEADER
from segue.client import ForbiddenError, SegueClient
from segue.protocol.codec import encode
from segue.protocol.messages import CancelJob, GetJob, JobProgressed, JobStatus
from segue.protocol.names import ANY_OWNER_JOB_UPDATES, Names, job_updates_binding
from segue.settings import Settings
from segue.worker import Worker

from .conftest import REPO, demo_worker_for, running_service

ORCHESTRATOR = "segue-orchestrator"
WORKER = "segue-worker"
ALICE = "segue-alice"
BOB = "segue-bob"
ADMIN = "segue-admin"
DOCS = REPO / "docs" / "security.md"
DOCS_NAMESPACE = "segue"
COMMAND_TIMEOUT_S = 60
WAIT_S = 30


# --- the documented permissions ----------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What one RabbitMQ user may do in a vhost: the configure, write and read
    regexes, and per topic exchange the (write, read) regexes of routing keys."""

    user: str
    configure: str
    write: str
    read: str
    topics: tuple[tuple[str, str, str], ...] = ()

    def commands(self, vhost: str) -> list[list[str]]:
        """The ``rabbitmqctl`` commands that grant it (as in docs/security.md)."""
        commands = [
            ["set_permissions", "-p", vhost, self.user, self.configure, self.write, self.read]
        ]
        for exchange, write, read in self.topics:
            commands.append(
                ["set_topic_permissions", "-p", vhost, self.user, exchange, write, read]
            )
        return commands


def _re(name: str) -> str:
    """``name`` as a regex matching itself (names hold no other special character)."""
    return name.replace(".", r"\.")


def orchestrator_grant(user: str, names: Names) -> Grant:
    """Declares the whole topology (binding the commands and events queues to their
    exchanges), consumes commands and events, publishes tasks, control messages,
    updates, replies (default exchange) and dead letters."""
    ns = _re(names.namespace)
    return Grant(
        user,
        configure=rf"^{ns}\.(commands|events|commands-in|events-in|dead|tasks|updates|control"
        rf"|task\..+)$",
        write=rf"^(amq\.default|{ns}\.(commands|events|tasks|updates|control|dead|task\..+))$",
        read=rf"^{ns}\.(commands|events|commands-in|events-in|dead|tasks|task\..+)$",
    )


def worker_grant(user: str, names: Names) -> Grant:
    """Declares the exchanges, the events and task queues and its own control queue
    (named ``amq_<random>`` by aio-pika), consumes tasks and control messages, publishes
    events (to ``<ns>.events-in``) and dead letters."""
    ns = _re(names.namespace)
    return Grant(
        user,
        configure=rf"^({ns}\.(commands-in|events-in|tasks|updates|control|dead|events"
        rf"|task\..+)|amq_.*)$",
        write=rf"^({ns}\.(events-in|events|dead|task\..+)|amq_.*)$",
        read=rf"^({ns}\.(events-in|tasks|control|dead|events|task\..+)|amq_.*)$",
        topics=((names.control_exchange, "^$", r"^attempt\."),),
    )


def client_grant(user: str, names: Names, *, admin: bool = False) -> Grant:
    """Sends commands (to ``<ns>.commands-in`` only), declares and consumes its own
    reply queues, and binds them to the updates of its own jobs only (an admin: of any
    job)."""
    ns = _re(names.namespace)
    replies = _re(names.reply_queue_prefix(user))
    updates = r"^(client\.{username}\.|#\.job\.)" if admin else r"^client\.{username}\."
    return Grant(
        user,
        configure=rf"^{replies}",
        write=rf"^({ns}\.commands-in|{replies}.*)$",
        read=rf"^({ns}\.updates|{replies}.*)$",
        topics=((names.updates_exchange, "^$", updates),),
    )


def grants(names: Names) -> list[Grant]:
    """Every user of this test (and of the example in docs/security.md)."""
    return [
        orchestrator_grant(ORCHESTRATOR, names),
        worker_grant(WORKER, names),
        client_grant(ALICE, names),
        client_grant(BOB, names),
        client_grant(ADMIN, names, admin=True),
    ]


def test_the_documented_permissions_are_the_tested_ones() -> None:
    documented = sorted(
        shlex.split(line)[1:]
        for line in DOCS.read_text().splitlines()
        if re.match(r"rabbitmqctl set_(topic_)?permissions ", line)
    )
    tested = sorted(
        command for grant in grants(Names(DOCS_NAMESPACE)) for command in grant.commands("/")
    )
    assert documented == tested


# --- users on the test broker ------------------------------------------------------------


@dataclass(frozen=True)
class Users:
    """The AMQP URL of each test user, by name."""

    urls: dict[str, str]

    def url(self, user: str) -> str:
        return self.urls[user]


async def rabbitmqctl(*args: str, check: bool = True) -> str:
    """Run ``rabbitmqctl args``; fail the test, saying why, if it fails and ``check``."""
    try:
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            "-q",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        pytest.fail(
            "rabbitmqctl is not installed: these tests create RabbitMQ users with it "
            "(run them where rabbitmqctl manages the broker of SEGUE_TEST_AMQP_URL)",
            pytrace=False,
        )
    out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    if check and process.returncode != 0:
        pytest.fail(
            f"`rabbitmqctl {shlex.join(args)}` failed ({process.returncode}): "
            f"{err.decode(errors='replace').strip()} (rabbitmqctl needs root, and must "
            "manage the broker of SEGUE_TEST_AMQP_URL)",
            pytrace=False,
        )
    return out.decode()


async def create_user(grant: Grant, password: str, vhost: str) -> None:
    """(Re)create ``grant.user`` with ``password`` and exactly ``grant``'s permissions."""
    await rabbitmqctl("delete_user", grant.user, check=False)
    await rabbitmqctl("add_user", grant.user, password)
    for command in grant.commands(vhost):
        await rabbitmqctl(*command)


def user_url(amqp_url: str, user: str, password: str) -> str:
    parts = urlsplit(amqp_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:]) or "/"


@pytest.fixture
async def users(amqp_url: str, names: Names) -> AsyncIterator[Users]:
    """The test users, with the documented permissions for this test's namespace."""
    vhost = vhost_of(amqp_url)
    passwords = {grant.user: secrets.token_hex(12) for grant in grants(names)}
    await asyncio.gather(
        *(create_user(grant, passwords[grant.user], vhost) for grant in grants(names))
    )
    try:
        yield Users({user: user_url(amqp_url, user, pw) for user, pw in passwords.items()})
    finally:
        await asyncio.gather(*(rabbitmqctl("delete_user", user) for user in passwords))


@pytest.fixture
async def platform(settings: Settings, users: Users, names: Names) -> AsyncIterator[Users]:
    """The orchestrator (admins: segue-admin) and a demo worker, each as its own user."""
    orchestrating = settings.model_copy(
        update={"amqp_url": users.url(ORCHESTRATOR), "admins": ADMIN}
    )
    worker: Worker = demo_worker_for(users.url(WORKER), names, concurrency=4)
    async with running_service(orchestrating), worker:
        yield users


@pytest.fixture
async def clients(platform: Users, names: Names) -> AsyncIterator[dict[str, SegueClient]]:
    """A connected client SDK of alice, of bob and of the admin (who follows as admin)."""
    opened = {
        user: SegueClient(
            platform.url(user), names.namespace, request_timeout_s=20, admin=user == ADMIN
        )
        for user in (ALICE, BOB, ADMIN)
    }
    for client in opened.values():
        await client.connect()
    try:
        yield opened
    finally:
        for client in opened.values():
            await client.close()


# --- the tests ---------------------------------------------------------------------------


async def test_bob_can_neither_cancel_retry_read_nor_follow_alices_job(
    clients: dict[str, SegueClient], platform: Users, names: Names, amqp_url: str
) -> None:
    alice, bob = clients[ALICE], clients[BOB]
    job = await alice.submit("quick_check", {"value": 7, "step_seconds": 4})
    await _running(job.updates())

    await bob.cancel(job.job_id, reason="bob wants it gone")
    with pytest.raises(ForbiddenError, match=BOB):
        await bob.retry(job.job_id)
    with pytest.raises(ForbiddenError, match=BOB):
        await bob.get(job.job_id)
    async with _connection(platform.url(BOB)) as connection:
        for key in (
            job_updates_binding(job.job_id, owner=ALICE),
            ANY_OWNER_JOB_UPDATES.format(job_id=job.job_id),
            "job.#",
            "#",
            "client.#",
        ):
            with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
                await _bind_reply_queue(connection, names, BOB, key)
        # bob may bind his own keys: the refusals above are about whose keys they are.
        await _bind_reply_queue(connection, names, BOB, job_updates_binding(uuid4(), owner=BOB))

    result = await asyncio.wait_for(job.result(), WAIT_S)
    assert result.status is JobStatus.SUCCEEDED, "bob's cancel changed nothing"
    view = await alice.get(job.job_id)
    assert view is not None
    assert view.owner == ALICE
    assert "bob wants it gone" not in str(view.history)
    reasons = await _dead_letter_reasons(amqp_url, names, expected=3)
    assert sum(BOB in reason for reason in reasons) == 3, reasons


async def test_alice_cancels_her_own_job_and_the_admin_reads_and_cancels_any(
    clients: dict[str, SegueClient],
) -> None:
    alice, admin = clients[ALICE], clients[ADMIN]
    own = await alice.submit("quick_check", {"step_seconds": 30})
    await _running(own.updates())
    await alice.cancel(own.job_id, reason="alice changed her mind")
    assert (await asyncio.wait_for(own.result(), WAIT_S)).status is JobStatus.CANCELLED

    other = await alice.submit("quick_check", {"step_seconds": 30})
    await _running(other.updates())
    viewed = await admin.get(other.job_id)
    assert viewed is not None
    assert (viewed.owner, viewed.status) == (ALICE, JobStatus.RUNNING)
    followed = await admin.follow(other.job_id)  # binds #.job.<id>.*: admins only
    await admin.cancel(other.job_id, reason="the admin stopped it")
    assert (await asyncio.wait_for(other.result(), WAIT_S)).status is JobStatus.CANCELLED
    seen_by_admin = await asyncio.wait_for(followed.result(), WAIT_S)
    assert seen_by_admin.status is JobStatus.CANCELLED


async def test_rabbitmq_refuses_a_forged_user_id_and_answers_go_to_the_callers_own_queues(
    clients: dict[str, SegueClient], platform: Users, names: Names, amqp_url: str
) -> None:
    job = await clients[ALICE].submit("quick_check", {"step_seconds": 3})
    await _running(job.updates())

    async with _connection(platform.url(BOB)) as connection:
        channel = await connection.channel(publisher_confirms=True)
        forged = CancelJob(job_id=job.job_id, reason="bob, posing as alice")
        with pytest.raises(ChannelPreconditionFailed, match="PRECONDITION_FAILED"):
            await _send(channel, names, forged, user_id=ALICE)

    async with _connection(platform.url(ALICE)) as alices:
        answers: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        inbox = await (await alices.channel()).declare_queue(
            names.reply_queue_prefix(ALICE) + "inbox", exclusive=True, auto_delete=True
        )
        await inbox.consume(answers.put, no_ack=True)
        async with _connection(platform.url(BOB)) as bobs:
            channel = await bobs.channel(publisher_confirms=True)
            query = GetJob(job_id=job.job_id)
            await _send(channel, names, query, user_id=BOB, reply_to=inbox.name)
        reasons = await _dead_letter_reasons(amqp_url, names, expected=1)
        await asyncio.sleep(0.5)
        assert answers.empty(), "nothing is answered to a queue of another user"
    assert any("reply_to" in reason and BOB in reason for reason in reasons), reasons
    result = await asyncio.wait_for(job.result(), WAIT_S)
    assert result.status is JobStatus.SUCCEEDED, "the forged cancel never arrived"


async def test_a_client_cannot_put_a_message_into_a_queue_it_does_not_own(
    platform: Users, names: Names
) -> None:
    task_queue = names.task_queue("quick_check")
    async with _connection(platform.url(BOB)) as connection:
        for exchange, key in (("", task_queue), (names.tasks_exchange, "quick_check")):
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(exchange, ensure=False)
            with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
                await target.publish(aio_pika.Message(b'{"type": "step_task"}'), routing_key=key)


# --- helpers -----------------------------------------------------------------------------


async def _running(updates: AsyncIterator[Any]) -> None:
    """Wait until the job reports progress (its step is running on the worker)."""
    async with asyncio.timeout(WAIT_S):
        async for update in updates:
            if isinstance(update, JobProgressed):
                return
    raise AssertionError("the job finished before it reported progress")


@contextlib.asynccontextmanager
async def _connection(url: str) -> AsyncIterator[AbstractConnection]:
    """A plain aio-pika connection, as the user of ``url``."""
    connection = await aio_pika.connect(url)
    async with connection:
        yield connection


async def _bind_reply_queue(
    connection: AbstractConnection, names: Names, user: str, key: str
) -> None:
    """Declare a reply queue of ``user`` and bind it to the updates with ``key``."""
    channel = await connection.channel()
    queue = await channel.declare_queue(
        names.reply_queue_prefix(user) + uuid4().hex, exclusive=True, auto_delete=True
    )
    await queue.bind(names.updates_exchange, routing_key=key)
    await channel.close()


async def _send(
    channel: AbstractChannel,
    names: Names,
    command: CancelJob | GetJob,
    *,
    user_id: str,
    reply_to: str | None = None,
) -> None:
    """Publish ``command`` to the commands exchange by hand, claiming ``user_id``."""
    message = aio_pika.Message(
        encode(command), user_id=user_id, reply_to=reply_to, correlation_id=uuid4().hex
    )
    exchange = await channel.get_exchange(names.commands_exchange, ensure=False)
    await exchange.publish(message, routing_key=names.commands_queue)


async def _dead_letter_reasons(amqp_url: str, names: Names, expected: int) -> list[str]:
    """The reasons of the namespace's dead letters, once at least ``expected`` came
    (taken off the dead-letter queue, as guest)."""
    reasons: list[str] = []
    async with _connection(amqp_url) as connection:
        queue = await (await connection.channel()).get_queue(names.dead_queue)
        async with asyncio.timeout(WAIT_S):
            while len(reasons) < expected:
                message = await queue.get(fail=False, no_ack=True)
                if message is None:
                    await asyncio.sleep(0.1)
                else:
                    reasons.append(str((message.headers or {}).get(REASON_HEADER)))
    return reasons
