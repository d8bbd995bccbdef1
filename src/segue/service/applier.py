"""The one shape of every state change, for a batch of events at once: lock the
jobs, ``decide`` each event in turn, write state, history and outbox rows in one
transaction, commit, then publish.

Events of one job in a batch are folded: each is decided on the state the
previous one left, so a ``started``, a progress and a result arriving together
make one write of the job. A batch that fails as a whole is not retried here:
callers retry its events one at a time (:class:`segue.broker.boundary.ConsumeBoundary`
for messages, :meth:`Applier.sweep` for timers), so one bad event never fails its
neighbours.

Two cases need the batch's context, not just each job's:

- A cancel may overtake its job's submission (commands are handled
  concurrently). A cancel of a job not stored yet is kept as a *pending
  cancel*; the submission takes it and the job ends cancelled before it runs.
  Submissions and cancels lock their job ids even when no row exists yet
  (``lock_jobs(..., absent_too=True)``), so the two take turns.
- Timers are judged at the *horizon*: the moment up to which the orchestrator
  has heard from the workers (see :class:`segue.service.lag.EventsHorizon`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

import structlog

from segue.engine.effects import Decision, Effect, Record
from segue.engine.events import CancelRequested, Event, JobSubmitted, TimerFired
from segue.engine.machine import decide, may_act_on
from segue.engine.state import Job
from segue.engine.timers import next_wakeup
from segue.errors import describe
from segue.protocol.envelope import Outgoing
from segue.protocol.names import Names
from segue.service.outbox import is_durable, latest_notices, to_outbox
from segue.store.repository import (
    ConcurrentInsertError,
    JobWrite,
    Locked,
    OutboxRow,
    PendingCancel,
)

POSTPONE_FAILED_TIMER = timedelta(seconds=60)
"""How long a job whose timers cannot be handled first waits before the sweeper
tries again; each further failure doubles it, up to :data:`MAX_POSTPONE`."""
MAX_POSTPONE = timedelta(hours=1)


class JobTransactionPort(Protocol):
    """The job operations of one transaction (see
    :class:`segue.store.repository.JobTransaction`)."""

    async def lock_jobs(
        self, job_ids: Iterable[UUID], *, absent_too: bool = False
    ) -> dict[UUID, Locked]:
        """Lock and load the stored ones of these jobs (``absent_too``: lock the ids
        of absent ones as well)."""
        ...

    async def take_pending_cancels(self, job_ids: Sequence[UUID]) -> dict[UUID, PendingCancel]:
        """Remove and return the pending cancels of these jobs."""
        ...

    async def add_pending_cancels(self, cancels: Sequence[PendingCancel]) -> None:
        """Keep cancels of jobs not submitted yet."""
        ...

    async def due_jobs(self, now: datetime, limit: int) -> list[Locked]:
        """Lock and load up to ``limit`` due jobs another transaction does not hold."""
        ...

    async def shared_horizon(self, horizon: datetime, floor: datetime | None = None) -> datetime:
        """``horizon``, held back by the horizons of the other replicas that still
        bind, but not before ``floor``."""
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


@dataclass(frozen=True, slots=True)
class Staged:
    """A batch written in a transaction that has not committed yet: one
    :class:`Applied` per change, and what to publish (and observe) once it has
    (see :meth:`Applier.send`)."""

    applied: list[Applied]
    rows: list[OutboxRow]
    notices: list[Outgoing]
    writes: list[JobWrite]


@dataclass(slots=True)
class _Fold:
    """One job's state through the events of a batch, and what they produced."""

    before: Locked | None
    job: Job | None
    forced: bool = False
    postpone_until: datetime | None = None
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
        wake_at = next_wakeup(self.job)
        if wake_at is not None and self.postpone_until is not None:
            wake_at = max(wake_at, self.postpone_until)
        return JobWrite(before, self.job, last_seq, self.records, wake_at)


class Applier:
    """Applies engine events to stored jobs, exactly once per committed batch."""

    def __init__(
        self,
        store: JobStorePort,
        sender: Sender,
        names: Names,
        clock: Callable[[], datetime],
        is_transient: Callable[[BaseException], bool],
        horizon: Callable[[], datetime] | None = None,
        horizon_floor: Callable[[], datetime] | None = None,
        on_swept: Callable[[float], None] | None = None,
        on_timer_failed: Callable[[], None] | None = None,
        on_written: Callable[[Sequence[JobWrite]], None] | None = None,
    ) -> None:
        self._store = store
        self._is_transient = is_transient
        self._sender = sender
        self._names = names
        self._clock = clock
        self._horizon = horizon or clock
        self._horizon_floor = horizon_floor
        self._on_swept = on_swept
        self._on_timer_failed = on_timer_failed
        self._on_written = on_written
        self._timer_failures: dict[UUID, int] = {}
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
            staged = await self.apply_within(tx, changes, now)
        await self.send(staged)
        return staged.applied

    async def apply_within(
        self, tx: JobTransactionPort, changes: Sequence[Change], now: datetime
    ) -> Staged:
        """Apply the changes inside ``tx``, a transaction of the caller's that may hold
        more (the scheduler advances its schedules in it); call :meth:`send` once it
        has committed. Raises :class:`ConcurrentInsertError` like :meth:`apply`, and
        then ``tx`` must be rolled back."""
        commands = any(isinstance(c.event, JobSubmitted | CancelRequested) for c in changes)
        locked = await tx.lock_jobs((c.job_id for c in changes), absent_too=commands)
        if commands:
            changes = await _with_pending_cancels(tx, locked, changes)
        staged = await self._decide_and_write(tx, locked, changes, now)
        if commands:
            await tx.add_pending_cancels(_pending_cancels(changes, staged.applied))
        return staged

    async def send(self, staged: Staged) -> None:
        """Publish what a committed batch must send, and tell ``on_written`` what it wrote
        (metrics: a failure there is logged and never stops the publishing)."""
        if self._on_written is not None and staged.writes:
            try:
                self._on_written(staged.writes)
            except Exception as exc:
                self._log.error("observing_writes_failed", error=describe(exc))
        await self._sender.send(staged.rows, staged.notices)

    async def sweep(self, limit: int) -> int:
        """Fire the timers of up to ``limit`` due jobs; returns how many were due.

        Should saving them together fail, each job is tried in a transaction of
        its own; a job that fails alone is postponed, so it cannot stop the
        timers of the others.
        """
        now = self._clock()
        horizon = min(self._horizon(), now)
        due: list[UUID] = []
        try:
            async with self._store.transaction() as tx:
                floor = self._horizon_floor() if self._horizon_floor is not None else None
                horizon = await tx.shared_horizon(horizon, floor)
                if self._on_swept is not None:
                    self._on_swept((now - horizon).total_seconds())
                locked = {job.job.job_id: job for job in await tx.due_jobs(horizon, limit)}
                due = list(locked)
                timer = TimerFired(horizon=horizon)
                timers = [Change(job_id, timer) for job_id in due]
                staged = await self._decide_and_write(tx, locked, timers, now)
        except Exception as exc:
            if not due or self._is_transient(exc):
                raise
            self._log.warning("timers_batch_failed", jobs=len(due), error=describe(exc))
            await self._sweep_one_by_one(due, horizon)
            return len(due)
        await self.send(staged)
        return len(due)

    async def _sweep_one_by_one(self, job_ids: Sequence[UUID], horizon: datetime) -> None:
        timer = TimerFired(horizon=horizon)
        for job_id in job_ids:
            try:
                await self.apply([Change(job_id, timer)])
            except Exception as exc:
                if self._is_transient(exc):
                    raise
                until = self._clock() + self._postponement(job_id)
                self._log.error(
                    "timer_failed",
                    job_id=str(job_id),
                    error=describe(exc),
                    failures=self._timer_failures[job_id],
                    retry_at=str(until),
                )
                await self._store.postpone_wakeup(job_id, until)
            else:
                self._timer_failures.pop(job_id, None)

    def _postponement(self, job_id: UUID) -> timedelta:
        """How long the timers of a job that failed again wait (doubling, capped)."""
        failures = self._timer_failures.get(job_id, 0) + 1
        self._timer_failures[job_id] = failures
        if self._on_timer_failed is not None:
            self._on_timer_failed()
        return min(MAX_POSTPONE, POSTPONE_FAILED_TIMER * (1 << min(failures - 1, 10)))

    async def _decide_and_write(
        self,
        tx: JobTransactionPort,
        locked: dict[UUID, Locked],
        changes: Sequence[Change],
        now: datetime,
    ) -> Staged:
        """Fold ``decide`` over each job's changes and write the batch; returns one
        :class:`Applied` per change, the outbox rows and jobs written and the notices."""
        folds: dict[UUID, _Fold] = {}
        applied = [self._decide(folds, locked, change, now) for change in changes]
        rows, notices, writes = await self._write(tx, folds.values(), now)
        return Staged(applied, rows, notices, writes)

    def _decide(
        self, folds: dict[UUID, _Fold], locked: dict[UUID, Locked], change: Change, now: datetime
    ) -> Applied:
        fold = folds.get(change.job_id)
        if fold is None:
            fold = folds[change.job_id] = _Fold.of(locked.get(change.job_id))
        found = fold.job is not None
        decision = decide(fold.job, change.event, now)
        fold.absorb(decision)
        if isinstance(change.event, TimerFired):
            fold.forced = True
            if decision.engine_error:  # it would fail the same way at once: wait
                fold.postpone_until = now + MAX_POSTPONE
                if self._on_timer_failed is not None:
                    self._on_timer_failed()
        return Applied(found, decision)

    async def _write(
        self, tx: JobTransactionPort, folds: Iterable[_Fold], now: datetime
    ) -> tuple[list[OutboxRow], list[Outgoing], list[JobWrite]]:
        writes: list[JobWrite] = []
        effects: list[Effect] = []
        jobs: dict[UUID, Job] = {}
        for fold in folds:
            write = fold.write()
            if write is not None:
                writes.append(write)
                effects.extend(fold.effects)
                jobs[write.after.job_id] = write.after
        durable = [
            self._message(effect, jobs[effect.job_id], now)
            for effect in effects
            if is_durable(effect)
        ]
        ids = await tx.write(writes, durable, at=now) if writes else []
        notices = [
            self._message(notice, jobs[notice.job_id], now) for notice in latest_notices(effects)
        ]
        rows = [OutboxRow(row_id, message) for row_id, message in zip(ids, durable, strict=True)]
        return rows, notices, writes

    def _message(self, effect: Effect, job: Job, now: datetime) -> Outgoing:
        return to_outbox(effect, self._names, now, job.updates_key, job.owner)


async def _with_pending_cancels(
    tx: JobTransactionPort, locked: dict[UUID, Locked], changes: Sequence[Change]
) -> list[Change]:
    """The changes, with each submission of a new job that a cancel overtook
    marked cancelled: by a pending cancel stored earlier, or by a cancel earlier
    in the same batch. A cancel applies only if its requester may cancel the job.
    """
    new_ids = [
        c.job_id for c in changes if isinstance(c.event, JobSubmitted) and c.job_id not in locked
    ]
    if not new_ids:
        return list(changes)
    pending = await tx.take_pending_cancels(new_ids)
    marked: list[Change] = []
    for change in changes:
        event = change.event
        if change.job_id in locked or change.job_id not in new_ids:
            marked.append(change)
            continue
        if isinstance(event, CancelRequested):
            cancel = PendingCancel(change.job_id, event.reason, event.requester, event.admin)
            pending.setdefault(change.job_id, cancel)
        elif isinstance(event, JobSubmitted) and change.job_id in pending:
            cancel = pending.pop(change.job_id)
            if may_act_on(event.owner, cancel.requester, cancel.admin):
                change = Change(change.job_id, replace(event, cancelled=cancel.reason))
        marked.append(change)
    return marked


def _pending_cancels(changes: Sequence[Change], applied: Sequence[Applied]) -> list[PendingCancel]:
    """Cancels of jobs that still do not exist after the batch, to keep for their submission."""
    created = {
        c.job_id
        for c, a in zip(changes, applied, strict=True)
        if isinstance(c.event, JobSubmitted) and a.decision.job is not None
    }
    return [
        PendingCancel(c.job_id, c.event.reason, c.event.requester, c.event.admin)
        for c, a in zip(changes, applied, strict=True)
        if isinstance(c.event, CancelRequested) and not a.found and c.job_id not in created
    ]
