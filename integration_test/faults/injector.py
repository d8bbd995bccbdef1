"""Crafted worker events that a correct orchestrator must record and ignore.

The :class:`EventInjector` picks real attempts from the database and publishes,
to the events exchange as a worker would:

- ``duplicate``: ``StepSucceeded`` again for an attempt that already
  succeeded, with the same output;
- ``reordered``: ``StepStarted`` and ``StepProgressed`` for an attempt that
  already reported its result;
- ``stale``: ``StepFailed`` (not retryable) carrying the id of an earlier
  attempt of the job, one that was lost or superseded by a later attempt;
- ``duplicate_started``: ``StepStarted`` again for an attempt that is running.

Every injected event is remembered (:attr:`EventInjector.injected`) so that
the audit can check each one left an ``event_ignored`` record and changed
nothing else. Each carries its attempt's token, as the worker that sent the
original would: the orchestrator refuses (dead-letters) reports without it,
so without the token these would test that refusal instead of the fencing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.broker.connection import connect
from segue.broker.publisher import ConfirmedPublisher, Outgoing
from segue.protocol.codec import encode
from segue.protocol.messages import (
    ErrorInfo,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    WorkerEvent,
)
from segue.protocol.names import Names

INJECTED_PROGRESS_MESSAGE = "injected: progress after the result"
INJECTED_WORKER_ID = "fault-injector"
PUBLISH_TIMEOUT_S = 5.0


class InjectionKind(StrEnum):
    """What a crafted event imitates."""

    DUPLICATE = "duplicate"
    REORDERED = "reordered"
    STALE = "stale"
    DUPLICATE_STARTED = "duplicate_started"


@dataclass(frozen=True)
class Injected:
    """One crafted event the broker confirmed."""

    kind: InjectionKind
    job_id: UUID
    attempt_id: UUID
    event: str
    """The event's ``type`` (``step_succeeded``, ``step_started``, ...)."""
    detail: str = ""


ATTEMPT_WITH_SECRET = (
    "SELECT a.job_id, a.attempt_id, a.output, a.worker_id, j.secret "
    "FROM step_attempts a JOIN jobs j ON j.job_id = a.job_id "
)
SUCCEEDED_ATTEMPT = text(
    ATTEMPT_WITH_SECRET + "WHERE a.status = 'succeeded' ORDER BY random() LIMIT 1"
)
FINISHED_ATTEMPT = text(
    ATTEMPT_WITH_SECRET + "WHERE a.status IN ('succeeded', 'failed') ORDER BY random() LIMIT 1"
)
LOST_ATTEMPT = text(ATTEMPT_WITH_SECRET + "WHERE a.status = 'lost' ORDER BY random() LIMIT 1")
SUPERSEDED_ATTEMPT = text(
    ATTEMPT_WITH_SECRET + "WHERE j.status = 'running' AND a.ordinal < "
    "(SELECT max(b.ordinal) FROM step_attempts b WHERE b.job_id = a.job_id) "
    "ORDER BY random() LIMIT 1"
)
RUNNING_ATTEMPT = text(
    ATTEMPT_WITH_SECRET + "WHERE a.status = 'running' AND a.worker_id IS NOT NULL "
    "ORDER BY random() LIMIT 1"
)


def attempt_token(secret: str | None, attempt_id: UUID) -> str | None:
    """The token of the attempt's task, from its job's secret (None: a job without one).

    The same derivation as :func:`segue.engine.state.attempt_token`, which
    takes a whole job: should the two differ, every injected event is
    dead-lettered as ``wrong_token`` and the run fails on its dead letters.
    """
    if secret is None:
        return None
    digest = hmac.new(secret.encode(), b"token:" + attempt_id.bytes, hashlib.sha256)
    return digest.hexdigest()[:32]


class EventInjector:
    """Publishes crafted worker events while the run goes on."""

    def __init__(
        self,
        engine: AsyncEngine,
        connection: AbstractRobustConnection,
        publisher: ConfirmedPublisher,
        names: Names,
        rng: random.Random,
    ) -> None:
        self._engine = engine
        self._connection = connection
        self._publisher = publisher
        self._names = names
        self._rng = rng
        self.injected: list[Injected] = []
        self.skipped: Counter[str] = Counter()

    @classmethod
    async def open(
        cls, engine: AsyncEngine, amqp_url: str, names: Names, rng: random.Random
    ) -> EventInjector:
        """An injector with a robust connection of its own (close it with :meth:`close`)."""
        connection = await connect(amqp_url, "segue-fault-injector")
        channel = await connection.channel(publisher_confirms=True)
        publisher = ConfirmedPublisher(channel, confirm_timeout_s=PUBLISH_TIMEOUT_S)
        return cls(engine, connection, publisher, names, rng)

    async def close(self) -> None:
        """Close the broker connection."""
        await self._connection.close()

    def counts(self) -> Counter[InjectionKind]:
        """How many crafted events of each kind the broker confirmed."""
        return Counter(item.kind for item in self.injected)

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Inject one event of a random kind every ``interval_s`` until ``stop`` is set."""
        kinds = list(InjectionKind)
        while not stop.is_set():
            kind = self._rng.choice(kinds)
            try:
                await self.inject(kind)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a service is restarting: try again later
                self.skipped[type(exc).__name__] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def inject(self, kind: InjectionKind) -> None:
        """Publish the crafted event(s) of ``kind`` for a fitting attempt, if there is one."""
        match kind:
            case InjectionKind.DUPLICATE:
                await self._duplicate_result()
            case InjectionKind.REORDERED:
                await self._reordered()
            case InjectionKind.STALE:
                await self._stale_failure()
            case InjectionKind.DUPLICATE_STARTED:
                await self._duplicate_started()

    async def _duplicate_result(self) -> None:
        row = await self._pick(SUCCEEDED_ATTEMPT)
        if row is None:
            return
        event = StepSucceeded(
            job_id=row["job_id"],
            attempt_id=row["attempt_id"],
            worker_id=row["worker_id"] or "",
            sent_at=datetime.now(UTC),
            token=attempt_token(row["secret"], row["attempt_id"]),
            output=row["output"] or {},
        )
        await self._publish(InjectionKind.DUPLICATE, event)

    async def _reordered(self) -> None:
        row = await self._pick(FINISHED_ATTEMPT)
        if row is None:
            return
        common: dict[str, Any] = {
            "job_id": row["job_id"],
            "attempt_id": row["attempt_id"],
            "worker_id": row["worker_id"] or "",
            "sent_at": datetime.now(UTC),
            "token": attempt_token(row["secret"], row["attempt_id"]),
        }
        await self._publish(InjectionKind.REORDERED, StepStarted(**common))
        progress = StepProgressed(**common, fraction=0.5, message=INJECTED_PROGRESS_MESSAGE)
        await self._publish(InjectionKind.REORDERED, progress)

    async def _stale_failure(self) -> None:
        detail = "lost"
        row = await self._pick(LOST_ATTEMPT)
        if row is None:
            detail, row = "superseded", await self._pick(SUPERSEDED_ATTEMPT)
        if row is None:
            return
        error = ErrorInfo(kind="InjectedStaleFailure", message="a result from an earlier attempt")
        event = StepFailed(
            job_id=row["job_id"],
            attempt_id=row["attempt_id"],
            worker_id=INJECTED_WORKER_ID,
            sent_at=datetime.now(UTC),
            token=attempt_token(row["secret"], row["attempt_id"]),
            error=error,
            retryable=False,
        )
        await self._publish(InjectionKind.STALE, event, detail)

    async def _duplicate_started(self) -> None:
        row = await self._pick(RUNNING_ATTEMPT)
        if row is None:
            return
        event = StepStarted(
            job_id=row["job_id"],
            attempt_id=row["attempt_id"],
            worker_id=row["worker_id"],
            sent_at=datetime.now(UTC),
            token=attempt_token(row["secret"], row["attempt_id"]),
        )
        await self._publish(InjectionKind.DUPLICATE_STARTED, event)

    async def _pick(self, query: Any) -> dict[str, Any] | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        return dict(row) if row is not None else None

    async def _publish(self, kind: InjectionKind, event: WorkerEvent, detail: str = "") -> None:
        outgoing = Outgoing(  # where a worker publishes its events
            exchange=self._names.events_exchange,
            routing_key=self._names.events_queue,
            body=encode(event),
            message_id=f"injected-{uuid4().hex}",
        )
        await self._publisher.publish(outgoing)
        event_type = str(getattr(event, "type", ""))
        self.injected.append(Injected(kind, event.job_id, event.attempt_id, event_type, detail))
