"""The one shape of every state change, for a batch of events at once: lock the
jobs, ``decide`` each event in turn, write state, history and outbox rows in one
transaction, commit, then publish.

Events of one job in a batch are folded: each is decided on the state the
previous one left, so a ``started``, a progress and a result arriving together
make one write of the job. A batch that fails as a whole is not retried here:
callers retry its events one at a time (:class:`segue.broker.boundary.ConsumeBoundary`
for messages, :meth:`Applier.sweep` for timers), so one bad event never fails its
neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

import structlog

from segue.engine.effects import Decision, Effect, Record
from segue.engine.events import Event, TimerFired
from segue.engine.machine import decide
from segue.engine.state import Job
from segue.engine.timers import next_wakeup
from segue.errors import describe
from segue.protocol.envelope import Outgoing
from segue.protocol.names import Names
from segue.service.outbox import is_durable, latest_notices, to_outbox
from segue.store.repository import ConcurrentInsertError, JobWrite, Locked, OutboxRow

TIMER_FIRED = TimerFired()
POSTPONE_FAILED_TIMER = timedelta(seconds=60)
"""How long a job whose timers cannot be saved waits before the sweeper tries again."""


class JobTransactionPort(Protocol):
    """The job operations of one transaction (see
    :class:`segue.store.repository.JobTransaction`)."""

    async def lock_jobs(self, job_ids: Iterable[UUID]) -> dict[UUID, Locked]:
        """Lock and load the stored ones of these jobs."""
        ...

    async def due_jobs(self, now: datetime, limit: int) -> list[Locked]:
        """Lock and load up to ``limit`` due jobs another transaction does not hold."""
        ...

    async def write(
        self, writes: Sequence[JobWrite], outbox: Sequence[Outgoing], at: datetime | None = None
    ) -> list[int]:
        """Store the jobs and outbox messages; returns the outbox row ids."""
        ...


class JobStorePort(Protocol):
    """What the applier needs of the store: transactions, and postponing a broken timer."""

    def transaction(self) -> AbstractAsyncContextManager[JobTransactionPort]:
        """One transaction, committed on normal exit."""
        ...

    async def postpone_wakeup(self, job_id: UUID, until: datetime) -> None:
        """Move the job's wake-up time to ``until``."""
        ...


class Sender(Protocol):
    """Publishes what a committed batch must send (see :class:`segue.service.relay.OutboxRelay`)."""

    async def send(self, rows: Sequence[OutboxRow], notices: Sequence[Outgoing] = ()) -> int:
        """Publish outbox rows and notices; returns how many rows were not confirmed."""
        ...


@dataclass(frozen=True, slots=True)
class Change:
    """One event to apply to one job."""

    job_id: UUID
    event: Event


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one event did. ``found`` is False when the job did not exist."""

    found: bool
    decision: Decision


@dataclass(slots=True)
class _Fold:
    """One job's state through the events of a batch, and what they produced."""

    before: Locked | None
    job: Job | None
    forced: bool = False
    records: list[Record] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    @classmethod
    def of(cls, locked: Locked | None) -> _Fold:
        return cls(locked, None if locked is None else locked.job)

    def absorb(self, decision: Decision) -> None:
        if decision.job is not None:
            self.job = decision.job
        self.records.extend(decision.records)
        self.effects.extend(decision.effects)

    def write(self) -> JobWrite | None:
        """What to store, or None when nothing changed."""
        if self.job is None:
            return None
        before = None if self.before is None else self.before.job
        unchanged = self.job is before and not self.records and not self.effects
        if before is not None and unchanged and not self.forced:
            return None
        last_seq = 0 if self.before is None else self.before.last_seq
        return JobWrite(before, self.job, last_seq, self.records, next_wakeup(self.job))


class Applier:
    """Applies engine events to stored jobs, exactly once per committed batch."""

    def __init__(
        self,
        store: JobStorePort,
        sender: Sender,
        names: Names,
        clock: Callable[[], datetime],
        is_transient: Callable[[BaseException], bool],
    ) -> None:
        self._store = store
        self._is_transient = is_transient
        self._sender = sender
        self._names = names
        self._clock = clock
        self._log = structlog.get_logger("segue.applier")

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """Apply every change in one transaction; one :class:`Applied` per change, in order.

        A job that another replica inserted while this batch was inserting it
        makes the batch start over once (this time it sees the job).
        """
        if not changes:
            return []
        try:
            return await self._apply_once(changes)
        except ConcurrentInsertError:
            return await self._apply_once(changes)

    async def _apply_once(self, changes: Sequence[Change]) -> list[Applied]:
        now = self._clock()
        async with self._store.transaction() as tx:
            locked = await tx.lock_jobs(change.job_id for change in changes)
            applied, rows, notices = await self._decide_and_write(tx, locked, changes, now)
        await self._sender.send(rows, notices)
        return applied

    async def sweep(self, limit: int) -> int:
        """Fire the timers of up to ``limit`` due jobs; returns how many were due.

        Should saving them together fail, each job is tried in a transaction of
        its own; a job that fails alone is postponed, so it cannot stop the
        timers of the others.
        """
        now = self._clock()
        due: list[UUID] = []
        try:
            async with self._store.transaction() as tx:
                locked = {job.job.job_id: job for job in await tx.due_jobs(now, limit)}
                due = list(locked)
                timers = [Change(job_id, TIMER_FIRED) for job_id in due]
                _, rows, notices = await self._decide_and_write(tx, locked, timers, now)
        except Exception as exc:
            if not due or self._is_transient(exc):
                raise
            self._log.warning("timers_batch_failed", jobs=len(due), error=describe(exc))
            await self._sweep_one_by_one(due)
            return len(due)
        await self._sender.send(rows, notices)
        return len(due)

    async def _sweep_one_by_one(self, job_ids: Sequence[UUID]) -> None:
        for job_id in job_ids:
            try:
                await self.apply([Change(job_id, TIMER_FIRED)])
            except Exception as exc:
                if self._is_transient(exc):
                    raise
                until = self._clock() + POSTPONE_FAILED_TIMER
                self._log.error(
                    "timer_failed", job_id=str(job_id), error=describe(exc), retry_at=str(until)
                )
                await self._store.postpone_wakeup(job_id, until)

    async def _decide_and_write(
        self,
        tx: JobTransactionPort,
        locked: dict[UUID, Locked],
        changes: Sequence[Change],
        now: datetime,
    ) -> tuple[list[Applied], list[OutboxRow], list[Outgoing]]:
        """Fold ``decide`` over each job's changes and write the batch; returns one
        :class:`Applied` per change, the outbox rows written and the notices."""
        folds: dict[UUID, _Fold] = {}
        applied = [self._decide(folds, locked, change, now) for change in changes]
        rows, notices = await self._write(tx, folds.values(), now)
        return applied, rows, notices

    def _decide(
        self, folds: dict[UUID, _Fold], locked: dict[UUID, Locked], change: Change, now: datetime
    ) -> Applied:
        fold = folds.get(change.job_id)
        if fold is None:
            fold = folds[change.job_id] = _Fold.of(locked.get(change.job_id))
        found = fold.job is not None
        decision = decide(fold.job, change.event, now)
        fold.absorb(decision)
        fold.forced = fold.forced or isinstance(change.event, TimerFired)
        return Applied(found, decision)

    async def _write(
        self, tx: JobTransactionPort, folds: Iterable[_Fold], now: datetime
    ) -> tuple[list[OutboxRow], list[Outgoing]]:
        writes: list[JobWrite] = []
        effects: list[Effect] = []
        updates_keys: dict[UUID, str | None] = {}
        for fold in folds:
            write = fold.write()
            if write is not None:
                writes.append(write)
                effects.extend(fold.effects)
                updates_keys[write.after.job_id] = write.after.updates_key
        durable = [
            to_outbox(effect, self._names, now, updates_keys[effect.job_id])
            for effect in effects
            if is_durable(effect)
        ]
        ids = await tx.write(writes, durable, at=now) if writes else []
        notices = [
            to_outbox(notice, self._names, now, updates_keys[notice.job_id])
            for notice in latest_notices(effects)
        ]
        rows = [OutboxRow(row_id, message) for row_id, message in zip(ids, durable, strict=True)]
        return rows, notices
