"""The worker's control queue: cancel requests for the attempts it is running.

One exclusive, auto-delete queue per worker, bound to the control exchange
with ``attempt.<id>`` for each running attempt only, so the worker hears about
its own attempts and nothing else. The bindings are restored after a reconnect.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import TypeAdapter

from segue.protocol.codec import InvalidMessageError, decode
from segue.protocol.messages import CancelAttempt
from segue.protocol.names import attempt_control_key

CANCEL_ADAPTER: TypeAdapter[CancelAttempt] = TypeAdapter(CancelAttempt)
RPC_TIMEOUT_S = 10.0


class ControlListener:
    """Receives :class:`CancelAttempt` messages for the attempts being watched."""

    def __init__(
        self,
        channel: AbstractChannel,
        control_exchange: str,
        on_cancel: Callable[[CancelAttempt], None],
    ) -> None:
        self._channel = channel
        self._exchange = control_exchange
        self._on_cancel = on_cancel
        self._queue: AbstractQueue | None = None
        self._log = structlog.get_logger("segue.worker")

    async def start(self) -> None:
        """Declare the worker's control queue and start consuming it."""
        self._queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_message, no_ack=True)

    async def watch(self, attempt_id: UUID) -> None:
        """Receive control messages for ``attempt_id`` from now on."""
        await self._require_queue().bind(
            self._exchange, routing_key=attempt_control_key(attempt_id), timeout=RPC_TIMEOUT_S
        )

    async def unwatch(self, attempt_id: UUID) -> None:
        """Stop receiving control messages for ``attempt_id``; failures are only logged."""
        try:
            await self._require_queue().unbind(
                self._exchange, routing_key=attempt_control_key(attempt_id), timeout=RPC_TIMEOUT_S
            )
        except Exception as exc:  # the queue dies with the connection anyway
            self._log.warning("control_unbind_failed", attempt_id=str(attempt_id), error=str(exc))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            command = decode(CANCEL_ADAPTER, message.body)
        except InvalidMessageError as exc:
            self._log.warning("control_message_invalid", reason=exc.reason)
            return
        self._on_cancel(command)

    def _require_queue(self) -> AbstractQueue:
        if self._queue is None:
            raise RuntimeError("the control listener was not started")
        return self._queue
