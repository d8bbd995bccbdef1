"""The :class:`Worker`: serves step tasks with the handlers it is given."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Self

from aio_pika.abc import AbstractRobustConnection

from segue.broker.boundary import ConsumeBoundary
from segue.broker.connection import connect
from segue.broker.env import ConnectionSettings
from segue.broker.publisher import ConfirmedPublisher
from segue.broker.topology import declare_exchanges, declare_queue, ensure_queue
from segue.logs import library_logger
from segue.protocol.names import Names
from segue.protocol.topology import orchestrator_queues
from segue.worker.attempt import DEFAULT_PROGRESS_INTERVAL_S, AttemptSettings
from segue.worker.attempts import RunningAttempts
from segue.worker.control import ControlListener
from segue.worker.handler import StepHandler
from segue.worker.intake import TaskIntake
from segue.worker.reporter import EventReporter

ABANDON_WAIT_S = 5.0
"""How long cancelled attempts get to unwind once the grace period is over."""


class Worker:
    """A process serving step tasks: ``Worker(handlers=[prepare, simulate]).run()``.

    - ``amqp_url`` / ``namespace``: None means ``SEGUE_AMQP_URL`` /
      ``SEGUE_NAMESPACE`` from the environment, read when :meth:`run` starts
      (defaults ``amqp://guest:guest@127.0.0.1:5672/`` and ``segue``).
    - ``concurrency``: attempts run at once (across all handlers).
    - ``worker_id``: shown in the job history; default ``host:pid``.
    - ``heartbeat_interval_s``: None means a third of each step's
      ``heartbeat_s`` (at least 1 s), or 10 s if the step has none.
    - ``shutdown_grace_s``: how long :meth:`stop` lets running handlers finish
      before cancelling them.
    - ``progress_interval_s``: at most one progress report per attempt per
      interval (default 1 s: at most one per attempt per second reaches the
      orchestrator). Reports in between are coalesced: the latest is sent.
    """

    def __init__(
        self,
        handlers: Sequence[StepHandler],
        *,
        amqp_url: str | None = None,
        namespace: str | None = None,
        concurrency: int = 1,
        worker_id: str | None = None,
        heartbeat_interval_s: float | None = None,
        shutdown_grace_s: float = 30.0,
        progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
    ) -> None:
        _check_handlers(handlers)
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if heartbeat_interval_s is not None and heartbeat_interval_s <= 0:
            raise ValueError(f"heartbeat_interval_s must be positive, got {heartbeat_interval_s}")
        if shutdown_grace_s < 0 or progress_interval_s < 0:
            raise ValueError("shutdown_grace_s and progress_interval_s must not be negative")
        self._handlers = tuple(handlers)
        self._amqp_url = amqp_url
        self._namespace = namespace
        self._concurrency = concurrency
        self._worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._attempt_settings = AttemptSettings(
            self._worker_id, heartbeat_interval_s, progress_interval_s
        )
        self._grace_s = shutdown_grace_s
        self._stop_requested = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._ready = asyncio.Event()
        self._started = False
        self._run_task: asyncio.Task[None] | None = None
        self._log = library_logger("segue.worker").bind(worker_id=self._worker_id)

    @property
    def worker_id(self) -> str:
        """How this worker names itself in events and logs."""
        return self._worker_id

    @property
    def handlers(self) -> tuple[StepHandler, ...]:
        """The handlers this worker serves, one per step queue."""
        return self._handlers

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop_requested.is_set()

    def stop(self, now: bool = False) -> None:
        """Stop taking tasks and end :meth:`run` once running handlers finish.

        Handlers still running after ``shutdown_grace_s`` are cancelled and not
        reported (the orchestrator hands their steps to another worker);
        ``now=True`` cancels them at once. Safe to call from a signal handler.
        """
        self._stop_requested.set()
        if now:
            self._stop_now.set()

    async def run(self) -> None:
        """Connect, serve tasks until :meth:`stop`, then shut down gracefully.

        Raises :class:`BrokerUnavailableError` if RabbitMQ cannot be reached at
        start; later connection losses are survived (reconnect and resume).
        """
        if self._started:
            raise RuntimeError("a Worker runs once; create a new one to run again")
        self._started = True
        settings = ConnectionSettings.resolve(self._amqp_url, self._namespace)
        connection = await connect(settings.amqp_url, f"segue-worker {self._worker_id}")
        try:
            await self._serve(connection, Names(settings.namespace))
        finally:
            await connection.close()

    async def __aenter__(self) -> Self:
        """Start :meth:`run` in the background; return once tasks are being consumed."""
        run_task = asyncio.create_task(self.run(), name=f"segue-worker-{self._worker_id}")
        self._run_task = run_task
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({run_task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            run_task.result()  # raises why the worker could not start
            raise RuntimeError("the worker stopped before it was ready")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the worker (gracefully) and wait for it to end."""
        self.stop()
        if self._run_task is not None:
            await self._run_task

    async def _serve(self, connection: AbstractRobustConnection, names: Names) -> None:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await declare_exchanges(publish_channel, names)
        for spec in orchestrator_queues(names):
            if spec.name == names.events_queue:
                await declare_queue(publish_channel, spec)
            elif spec.name == names.dead_queue:  # its bounds are the orchestrator's to choose
                await ensure_queue(publish_channel, spec)
        publisher = ConfirmedPublisher(publish_channel)
        reporter = EventReporter(publisher, names.events_exchange, names.events_queue)
        attempts = RunningAttempts(reporter, self._attempt_settings)
        control = ControlListener(consume_channel, names.control_exchange, attempts.cancel)
        intake = TaskIntake(
            consume_channel,
            ConsumeBoundary(publisher, names.dead_exchange),
            attempts,
            self._concurrency,
        )
        await control.start()
        await intake.open(names, self._handlers)
        self._ready.set()
        self._log.info(
            "worker_started",
            namespace=names.namespace,
            queues=[h.queue for h in self._handlers],
            concurrency=self._concurrency,
        )
        await self._stop_requested.wait()
        await self._shutdown(intake, attempts, reporter)

    async def _shutdown(
        self, intake: TaskIntake, attempts: RunningAttempts, reporter: EventReporter
    ) -> None:
        self._log.info("worker_stopping", running=len(attempts), grace_s=self._grace_s)
        await intake.close()
        if not await self._within(intake.wait_idle(), self._grace_s):
            self._log.warning("worker_abandoning_steps", running=len(attempts))
            attempts.abandon_all()
            await self._within(intake.wait_idle(), ABANDON_WAIT_S)
        reporter.close()
        self._log.info("worker_stopped")

    async def _within(self, awaitable: Awaitable[None], timeout_s: float) -> bool:
        """Wait for ``awaitable`` up to ``timeout_s`` or until ``stop(now=True)``."""
        done = asyncio.ensure_future(awaitable)
        now = asyncio.create_task(self._stop_now.wait())
        try:
            await asyncio.wait({done, now}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (done, now):
                task.cancel()
            await asyncio.gather(done, now, return_exceptions=True)
        return done.done() and not done.cancelled()


def _check_handlers(handlers: Sequence[StepHandler]) -> None:
    if not handlers:
        raise ValueError("a Worker needs at least one handler")
    seen: set[str] = set()
    for handler in handlers:
        if not isinstance(handler, StepHandler):
            raise TypeError(
                f"{handler!r} is not a StepHandler: decorate it with @step_handler(queue)"
            )
        if handler.queue in seen:
            raise ValueError(f"two handlers for queue {handler.queue!r}")
        seen.add(handler.queue)
