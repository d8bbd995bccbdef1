"""The one consume boundary: every incoming message ends here as exactly one of
ack, dead-letter (with the reason in its headers) or requeue, logged once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from segue.broker.acks import BatchAcks
from segue.broker.publisher import Outgoing, Publisher, PublishError
from segue.errors import describe
from segue.logs import library_logger
from segue.protocol.text import shorten

REASON_HEADER = "x-segue-reason"
SOURCE_QUEUE_HEADER = "x-segue-source-queue"
MAX_REASON_CHARS = 2000
"""Longest reason header of a dead letter (its body is kept whole: it is what makes
the dead letter useful); a longer reason is cut and says how much was left out."""


def is_transient_broker_error(exc: BaseException) -> bool:
    """Connection trouble with the broker or the network: worth trying again."""
    return isinstance(exc, (OSError, TimeoutError, PublishError, *CONNECTION_EXCEPTIONS))


class Verdict(StrEnum):
    """What becomes of a handled message."""

    ACK = "ack"
    DEAD_LETTER = "dead_letter"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Outcome:
    """A handler's verdict on one message, with what to log about it."""

    verdict: Verdict
    reason: str = ""
    event: str = "message_handled"

    @classmethod
    def ack(cls, event: str = "message_handled", reason: str = "") -> Outcome:
        """The message was applied (or deliberately ignored)."""
        return cls(Verdict.ACK, reason, event)

    @classmethod
    def dead(cls, reason: str) -> Outcome:
        """The message can never be applied: park it with ``reason``."""
        return cls(Verdict.DEAD_LETTER, reason, "message_dead_lettered")


Handler = Callable[[AbstractIncomingMessage], Awaitable[Outcome]]
BatchHandler = Callable[[Sequence[AbstractIncomingMessage]], Awaitable[Sequence[Outcome]]]
"""Handles several messages at once; one outcome per message, in order."""
Observer = Callable[[str, Outcome, float], None]
"""Told of every settled message: (queue, outcome, seconds it took)."""
Callback = Callable[[AbstractIncomingMessage], Awaitable[None]]


class ConsumeBoundary:
    """Runs a handler on a message and settles the message from its outcome.

    A handler exception never escapes, so a consumer never dies. A transient
    failure (``is_transient``: e.g. the database restarting) requeues the
    message after ``retry_delay_s``, so nothing is lost; any other failure would
    fail the same way forever, so the message is dead-lettered with the error.
    """

    def __init__(
        self,
        publisher: Publisher,
        dead_exchange: str,
        retry_delay_s: float = 1.0,
        observer: Observer | None = None,
        is_transient: Callable[[BaseException], bool] = is_transient_broker_error,
    ) -> None:
        self._is_transient = is_transient
        self._publisher = publisher
        self._observer = observer
        self._dead_exchange = dead_exchange
        self._retry_delay_s = retry_delay_s
        self._log = library_logger("segue.consumer")
        self._in_flight: set[asyncio.Task[object]] = set()

    def wrap(self, queue_name: str, handler: Handler) -> Callback:
        """A consumer callback for ``queue_name`` running ``handler`` inside the boundary."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self.settle(queue_name, message, handler)

        return on_message

    async def settle(
        self, queue_name: str, message: AbstractIncomingMessage, handler: Handler
    ) -> None:
        """Handle one message and ack, dead-letter or requeue it."""
        started = time.monotonic()
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        with structlog.contextvars.bound_contextvars(
            queue=queue_name, message_id=message.message_id, redelivered=message.redelivered
        ):
            try:
                outcome = await handler(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcome = await self._on_error(exc)
            else:
                self._log_outcome(outcome)
            await self._apply(queue_name, message, outcome)
            if self._observer is not None:
                self._observer(queue_name, outcome, time.monotonic() - started)

    async def settle_batch(
        self,
        queue_name: str,
        messages: Sequence[AbstractIncomingMessage],
        handler: BatchHandler,
        acks: BatchAcks | None = None,
    ) -> list[Outcome]:
        """Handle messages together and ack, dead-letter or requeue each; returns
        what became of each, in order.

        If the batch fails as a whole for a reason that is not transient, each
        message is handled again alone, so one bad message fails no neighbour.
        Logs one summary line per batch (and one per dead-lettered message).
        With ``acks`` (which tracks every delivery of the channel), the
        acknowledged messages are acknowledged together, after the others are
        settled, in as few frames as it can (see :mod:`segue.broker.acks`).
        """
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(queue=queue_name):
            try:
                outcomes = list(await handler(messages))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if len(messages) > 1 and not self._is_transient(exc):
                    self._log.warning(
                        "batch_failed_retrying_alone", messages=len(messages), error=repr(exc)
                    )
                    alone: list[Outcome] = []
                    for message in messages:
                        alone.extend(await self.settle_batch(queue_name, [message], handler, acks))
                    return alone
                with structlog.contextvars.bound_contextvars(messages=len(messages)):
                    outcome = await self._on_error(exc)
                outcomes = [outcome] * len(messages)
            seconds = time.monotonic() - started
            acked: list[AbstractIncomingMessage] = []
            for message, outcome in zip(messages, outcomes, strict=True):
                if outcome.verdict is Verdict.DEAD_LETTER:
                    self._log.warning(
                        outcome.event, reason=outcome.reason, message_id=message.message_id
                    )
                if acks is not None and outcome.verdict is Verdict.ACK:
                    acked.append(message)
                else:
                    await self._apply(queue_name, message, outcome)
                    if acks is not None:
                        acks.forget([message])
                if self._observer is not None:
                    self._observer(queue_name, outcome, seconds)
            if acks is not None:
                await acks.ack(acked)
            verdicts = Counter(outcome.verdict.value for outcome in outcomes)
            self._log.info(
                "batch_handled", messages=len(messages), ms=round(seconds * 1000, 2), **verdicts
            )
            return outcomes

    async def _on_error(self, exc: Exception) -> Outcome:
        reason = shorten(describe(exc), MAX_REASON_CHARS)
        if self._is_transient(exc):
            self._log.warning("handler_failed_transiently", error=reason)
            await asyncio.sleep(self._retry_delay_s)
            return Outcome(Verdict.REQUEUE, reason, "handler_failed_transiently")
        self._log.exception("handler_error", error=reason)
        return Outcome(Verdict.DEAD_LETTER, f"handler error: {reason}", "handler_error")

    async def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for messages being handled; returns how many remain."""
        pending = {task for task in self._in_flight if task is not asyncio.current_task()}
        if not pending:
            return 0
        _, still_running = await asyncio.wait(pending, timeout=timeout_s)
        return len(still_running)

    async def _apply(
        self, queue_name: str, message: AbstractIncomingMessage, outcome: Outcome
    ) -> None:
        if outcome.verdict is Verdict.DEAD_LETTER:
            try:
                await self._publish_dead(queue_name, message, outcome.reason)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("dead_letter_failed")
                await message.nack(requeue=True)
                return
            await message.ack()
        elif outcome.verdict is Verdict.REQUEUE:
            await message.nack(requeue=True)
        else:
            await message.ack()

    async def _publish_dead(
        self, queue_name: str, message: AbstractIncomingMessage, reason: str
    ) -> None:
        headers = {str(k): str(v) for k, v in (message.headers or {}).items()}
        headers[REASON_HEADER] = shorten(reason, MAX_REASON_CHARS)
        headers[SOURCE_QUEUE_HEADER] = queue_name
        await self._publisher.publish(
            Outgoing(
                exchange=self._dead_exchange,
                routing_key=queue_name,
                body=message.body,
                message_id=message.message_id,
                headers=headers,
            )
        )

    def _log_outcome(self, outcome: Outcome) -> None:
        if outcome.verdict is Verdict.DEAD_LETTER:
            self._log.warning(outcome.event, reason=outcome.reason)
        elif outcome.reason:
            self._log.info(outcome.event, reason=outcome.reason)
        else:
            self._log.info(outcome.event)
