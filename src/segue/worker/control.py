"""The worker's control queue: cancel requests for the attempts it is running.

One exclusive, auto-delete queue per worker, bound once to the control
exchange with a pattern matching every attempt's control key
(``attempt.<id>``), so no broker round trip is spent per task. The worker
therefore hears every cancel of the installation and keeps those of the
attempts it runs; cancels are rare, so this broadcast costs less than a bind
and an unbind per task did. The binding is restored after a reconnect; it
exists before the first task is taken, so no cancel of a running attempt can
be missed.
"""

from __future__ import annotations

from collections.abc import Callable

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import TypeAdapter

from segue.logs import library_logger
from segue.protocol.codec import InvalidMessageError, decode
from segue.protocol.messages import CancelAttempt
from segue.protocol.names import EVERY_ATTEMPT_BINDING

CANCEL_ADAPTER: TypeAdapter[CancelAttempt] = TypeAdapter(CancelAttempt)
RPC_TIMEOUT_S = 10.0


class ControlListener:
    """Receives :class:`CancelAttempt` messages and hands each to ``on_cancel``.

    ``on_cancel`` gets the cancels of every attempt, and ignores those of
    attempts that do not run in this worker.
    """

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
        self._log = library_logger("segue.worker")

    async def start(self) -> None:
        """Declare the worker's control queue, bind it and start consuming it."""
        queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key=EVERY_ATTEMPT_BINDING, timeout=RPC_TIMEOUT_S)
        await queue.consume(self._on_message, no_ack=True)
        self._queue = queue

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            command = decode(CANCEL_ADAPTER, message.body)
        except InvalidMessageError as exc:
            self._log.warning("control_message_invalid", reason=exc.reason)
            return
        self._on_cancel(command)
