"""A hand-played orchestrator for SDK tests: raw aio-pika on the real broker.

It declares the namespace's topology, publishes tasks, control messages and
updates, collects what workers and clients send, and deletes everything of
the namespace at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar
from uuid import UUID, uuid4

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pydantic import BaseModel

from segue.broker.topology import declare_orchestrator_topology
from segue.protocol.codec import COMMAND_ADAPTER, EVENT_ADAPTER, decode, encode
from segue.protocol.messages import (
    CancelAttempt,
    Command,
    Event,
    StepTask,
    SubmitJob,
    Update,
)
from segue.protocol.names import CC_HEADER, Names, attempt_control_key, update_routing_key
from segue.protocol.tokens import token_digest as digest_of
from segue.protocol.topology import exchanges

E = TypeVar("E")
WAIT_S = 10.0


def make_task(queue: str, **fields: Any) -> StepTask:
    """A step task for ``queue`` with fresh ids and a fresh token."""
    data: dict[str, Any] = {
        "job_id": uuid4(),
        "workflow": "energy_plan",
        "step": queue,
        "queue": queue,
        "attempt": 1,
        "attempt_id": uuid4(),
        "token": uuid4().hex,
    }
    data.update(fields)
    return StepTask(**data)


class Harness:
    """The test's side of the broker for one namespace."""

    def __init__(
        self, url: str, connection: AbstractConnection, channel: AbstractChannel, names: Names
    ) -> None:
        self.url = url
        self.connection = connection
        self.channel = channel
        self.names = names
        self.step_queues: list[str] = []
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.commands: asyncio.Queue[tuple[Command, AbstractIncomingMessage]] = asyncio.Queue()
        self.updates_keys: dict[UUID, str] = {}
        self.owners: dict[UUID, str] = {}
        self.dead: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    @classmethod
    async def open(cls, url: str, names: Names, step_queues: Iterable[str]) -> Harness:
        """Connect and declare the orchestrator's topology with these task queues."""
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        harness = cls(url, connection, channel, names)
        harness.step_queues = sorted(step_queues)
        await declare_orchestrator_topology(channel, names, harness.step_queues)
        return harness

    # --- playing the orchestrator towards workers ---------------------------------------

    async def watch_events(self) -> None:
        """Collect every worker event from the events queue."""
        queue = await self.channel.get_queue(self.names.events_queue)

        async def on_event(message: AbstractIncomingMessage) -> None:
            async with message.process():
                self.events.put_nowait(decode(EVENT_ADAPTER, message.body))

        await queue.consume(on_event)

    async def watch_dead_letters(self) -> None:
        """Collect every dead-lettered message."""
        queue = await self.channel.get_queue(self.names.dead_queue)

        async def on_dead(message: AbstractIncomingMessage) -> None:
            async with message.process():
                self.dead.put_nowait(message)

        await queue.consume(on_dead)

    async def publish_task(self, task: StepTask) -> None:
        """Dispatch ``task`` as the orchestrator does: tasks exchange, key = step queue."""
        await self.publish_raw_task(task.queue, encode(task))

    async def publish_raw_task(self, queue: str, body: bytes) -> None:
        """Put any body into the task queue of ``queue``."""
        exchange = await self.channel.get_exchange(self.names.tasks_exchange)
        await exchange.publish(aio_pika.Message(body), routing_key=queue)

    async def publish_cancel(
        self,
        task: StepTask,
        reason: str = "cancelled by test",
        *,
        worker_id: str | None = None,
        token_digest: str | Literal["of_task"] | None = "of_task",
    ) -> None:
        """Tell the worker running ``task`` to stop (``worker_id``: only that worker).

        The cancel carries the digest of the task's token, as the orchestrator's
        do, unless ``token_digest`` says otherwise.
        """
        if token_digest == "of_task":
            token_digest = None if task.token is None else digest_of(task.token)
        command = CancelAttempt(
            job_id=task.job_id,
            attempt_id=task.attempt_id,
            reason=reason,
            worker_id=worker_id,
            token_digest=token_digest,
        )
        exchange = await self.channel.get_exchange(self.names.control_exchange)
        await exchange.publish(
            aio_pika.Message(encode(command)), routing_key=attempt_control_key(task.attempt_id)
        )

    async def next_event(self, wait_s: float = WAIT_S) -> Event:
        """The next worker event."""
        return await asyncio.wait_for(self.events.get(), wait_s)

    async def events_until(
        self, last: Callable[[Event], bool], wait_s: float = WAIT_S
    ) -> list[Event]:
        """Worker events up to and including the first one ``last`` accepts."""
        got: list[Event] = []
        async with asyncio.timeout(wait_s):
            while True:
                event = await self.events.get()
                got.append(event)
                if last(event):
                    return got

    async def quiet_for(self, seconds: float) -> list[Event]:
        """Every event that arrives within ``seconds``."""
        got: list[Event] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                got.append(await asyncio.wait_for(self.events.get(), remaining))
            except TimeoutError:
                break
        return got

    async def task_queue_depth(self, queue: str) -> int:
        """How many tasks wait in the task queue of ``queue``."""
        declared = await self.channel.declare_queue(self.names.task_queue(queue), passive=True)
        assert declared.declaration_result.message_count is not None
        return declared.declaration_result.message_count

    # --- playing the orchestrator towards clients ---------------------------------------

    async def watch_commands(self) -> None:
        """Collect every command clients send (acknowledged on receipt)."""
        queue = await self.channel.get_queue(self.names.commands_queue)

        async def on_command(message: AbstractIncomingMessage) -> None:
            async with message.process():
                command = decode(COMMAND_ADAPTER, message.body)
                if isinstance(command, SubmitJob) and command.updates_key is not None:
                    self.updates_keys[command.job_id] = command.updates_key
                if isinstance(command, SubmitJob) and message.user_id:
                    self.owners[command.job_id] = message.user_id
                self.commands.put_nowait((command, message))

        await queue.consume(on_command)

    async def next_command(
        self, kind: type[E], wait_s: float = WAIT_S
    ) -> tuple[E, AbstractIncomingMessage]:
        """The next command, which must be a ``kind``."""
        command, message = await asyncio.wait_for(self.commands.get(), wait_s)
        assert isinstance(command, kind), f"expected {kind.__name__}, got {command!r}"
        return command, message

    async def reply(self, request: AbstractIncomingMessage, body: BaseModel) -> None:
        """Answer a query on its ``reply_to`` queue with its ``correlation_id``."""
        assert request.reply_to, "a query must say where to reply"
        await self.channel.default_exchange.publish(
            aio_pika.Message(encode(body), correlation_id=request.correlation_id),
            routing_key=request.reply_to,
        )

    async def publish_update(
        self,
        update: Update,
        kind: str,
        job_id: UUID,
        message_id: str | None = None,
        owner: str | None = None,
    ) -> None:
        """Publish a job update on ``client.<owner>.job.<id>.<kind>``, and to its
        submitter's updates key (CC) when a submission seen by :meth:`watch_commands`
        gave one, as the orchestrator does. The owner is ``owner``, else the user of
        that submission."""
        exchange = await self.channel.get_exchange(self.names.updates_exchange)
        updates_key = self.updates_keys.get(job_id)
        headers: dict[str, Any] = {} if updates_key is None else {CC_HEADER: [updates_key]}
        await exchange.publish(
            aio_pika.Message(encode(update), message_id=message_id or uuid4().hex, headers=headers),
            routing_key=update_routing_key(job_id, kind, owner or self.owners.get(job_id)),
        )

    # --- cleanup ------------------------------------------------------------------------

    async def delete_namespace(self) -> None:
        """Delete every queue and exchange of the namespace, then disconnect."""
        await self.channel.close()  # its consumers first, so no queue is deleted under them
        channel = await self.connection.channel()
        queues = [
            self.names.commands_queue,
            self.names.events_queue,
            self.names.dead_queue,
            *(self.names.task_queue(q) for q in self.step_queues),
        ]
        for queue in queues:
            await channel.queue_delete(queue)
        for spec in exchanges(self.names):
            await channel.exchange_delete(spec.name)
        await self.connection.close()
