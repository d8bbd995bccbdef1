"""In-memory fakes of the orchestrator's I/O seams (no Postgres, no broker).

- :class:`FakeJobStore`: ``JobStorePort``/``JobTransactionPort`` of the applier, and the
  ``JobReader`` of the handlers; a transaction commits only when its context exits
  normally; ``write`` can be told to fail for chosen jobs.
- :class:`FakeRelayStore`: the outbox as the relay sees it (``RelayStore``).
- :class:`FakePublisher`: records what the broker confirmed; can refuse chosen messages.
- :class:`FakeSender`: records what a committed batch hands over for publishing.
- :class:`FakeMessage` and :class:`FakeQueue`: an incoming delivery and a consumed queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from segue.broker.publisher import PublishError
from segue.engine.effects import Record
from segue.engine.state import Job
from segue.protocol.envelope import Outgoing
from segue.protocol.messages import HistoryEntry, JobStatus, JobView, QueueEstimate, WorkerEvent
from segue.store.mapping import attempt_view
from segue.store.repository import (
    ConcurrentInsertError,
    JobWrite,
    Locked,
    OutboxClaim,
    OutboxRow,
    PendingCancel,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

ErrorFactory = Callable[[], Exception]


class Clock:
    """A settable clock: ``clock()`` is now; ``advance`` moves it on."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock ``seconds`` on; returns the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


# --- the job store ---------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One stored history entry."""

    seq: int
    record: Record
    at: datetime | None


@dataclass
class _Staged:
    """What one transaction wrote, applied to the store only at commit."""

    jobs: dict[UUID, Locked] = field(default_factory=dict)
    wake_at: dict[UUID, datetime | None] = field(default_factory=dict)
    history: dict[UUID, list[HistoryRow]] = field(default_factory=dict)
    outbox: dict[int, Outgoing] = field(default_factory=dict)
    writes: list[JobWrite] = field(default_factory=list)
    pending_cancels: dict[UUID, PendingCancel] = field(default_factory=dict)
    taken_cancels: list[UUID] = field(default_factory=list)


class FakeTransaction:
    """The job operations of one fake transaction (``JobTransactionPort``)."""

    def __init__(self, store: FakeJobStore) -> None:
        self._store = store
        self.staged = _Staged()

    async def lock_jobs(
        self, job_ids: Iterable[UUID], *, absent_too: bool = False
    ) -> dict[UUID, Locked]:
        wanted = list(job_ids)
        self._store.locked.append(wanted)
        return {job_id: self._store.jobs[job_id] for job_id in wanted if job_id in self._store.jobs}

    async def take_pending_cancels(self, job_ids: Sequence[UUID]) -> dict[UUID, PendingCancel]:
        taken = {
            i: self._store.pending_cancels[i] for i in job_ids if i in self._store.pending_cancels
        }
        self.staged.taken_cancels.extend(taken)
        return taken

    async def add_pending_cancels(self, cancels: Sequence[PendingCancel]) -> None:
        for cancel in cancels:
            self.staged.pending_cancels.setdefault(cancel.job_id, cancel)

    async def shared_horizon(self, horizon: datetime, floor: datetime | None = None) -> datetime:
        return horizon

    async def due_jobs(self, now: datetime, limit: int) -> list[Locked]:
        due = [
            (wake_at, job_id)
            for job_id, wake_at in self._store.wake_at.items()
            if wake_at is not None and wake_at <= now
        ]
        return [self._store.jobs[job_id] for _, job_id in sorted(due)[:limit]]

    async def write(
        self, writes: Sequence[JobWrite], outbox: Sequence[Outgoing], at: datetime | None = None
    ) -> list[int]:
        self._store.write_calls.append(list(writes))
        hook, self._store.next_write_hook = self._store.next_write_hook, None
        if hook is not None:
            await hook()
        if self._store.next_write_errors:
            raise self._store.next_write_errors.pop(0)
        for write in writes:
            failure = self._store.failing_jobs.get(write.after.job_id)
            if failure is not None:
                raise failure()
        for write in writes:
            self._stage(write, at)
        ids = list(range(self._store.next_outbox_id, self._store.next_outbox_id + len(outbox)))
        self._store.next_outbox_id += len(outbox)
        self.staged.outbox.update(zip(ids, outbox, strict=True))
        return ids

    def _stage(self, write: JobWrite, at: datetime | None) -> None:
        job_id = write.after.job_id
        stored = self._store.jobs.get(job_id)
        if write.before is None and stored is not None:
            raise ConcurrentInsertError(f"jobs stored meanwhile: {[str(job_id)]}")
        if write.before is not None and (stored is None or stored.last_seq != write.last_seq):
            raise AssertionError(f"write of {job_id} does not continue the stored history")
        rows = [
            HistoryRow(seq, record, at)
            for seq, record in enumerate(write.records, start=write.last_seq + 1)
        ]
        self.staged.jobs[job_id] = Locked(write.after, write.last_seq + len(rows))
        self.staged.wake_at[job_id] = write.wake_at
        self.staged.history.setdefault(job_id, []).extend(rows)
        self.staged.writes.append(write)


class FakeJobStore:
    """Jobs, history, wake-up times and outbox rows in dicts.

    ``fail_writes_of`` makes every ``write`` that includes a job raise (a poison
    job); ``fail_next_write`` makes only the next ``write`` raise.
    """

    def __init__(self) -> None:
        self.jobs: dict[UUID, Locked] = {}
        self.wake_at: dict[UUID, datetime | None] = {}
        self.history: dict[UUID, list[HistoryRow]] = {}
        self.outbox: dict[int, Outgoing] = {}
        self.write_calls: list[list[JobWrite]] = []
        """Every ``write`` call, committed or not."""
        self.committed: list[list[JobWrite]] = []
        """The writes of each committed transaction (that wrote anything)."""
        self.locked: list[list[UUID]] = []
        """The job ids of every ``lock_jobs`` call, as asked for."""
        self.transactions = 0
        self.rollbacks = 0
        self.postponed: list[tuple[UUID, datetime]] = []
        self.failing_jobs: dict[UUID, ErrorFactory] = {}
        self.next_write_errors: list[Exception] = []
        self.next_write_hook: Callable[[], Awaitable[object]] | None = None
        self.next_outbox_id = 1
        self.pending_cancels: dict[UUID, PendingCancel] = {}
        self.estimates: dict[UUID, QueueEstimate] = {}
        """What ``queue_estimate`` answers, by job."""
        self.estimated: list[UUID] = []
        """The job ids of every ``queue_estimate`` call."""

    # -- set-up ---------------------------------------------------------------------------

    def fail_writes_of(self, job_id: UUID, error: ErrorFactory) -> None:
        """Every write that includes ``job_id`` raises ``error()``."""
        self.failing_jobs[job_id] = error

    def fail_next_write(self, error: Exception) -> None:
        """The next write raises ``error``."""
        self.next_write_errors.append(error)

    def before_next_write(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run ``hook`` at the start of the next write (e.g. another replica's work)."""
        self.next_write_hook = hook

    # -- JobStorePort ---------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTransaction]:
        self.transactions += 1
        tx = FakeTransaction(self)
        try:
            yield tx
        except BaseException:
            self.rollbacks += 1
            raise
        self._commit(tx.staged)

    async def postpone_wakeup(self, job_id: UUID, until: datetime) -> None:
        self.postponed.append((job_id, until))
        self.wake_at[job_id] = until

    # -- JobReader ------------------------------------------------------------------------

    async def job_view(self, job_id: UUID, include_history: bool = True) -> JobView | None:
        locked = self.jobs.get(job_id)
        if locked is None:
            return None
        history = self.history_entries(job_id) if include_history else []
        return job_view(locked.job, history)

    async def queue_estimate(self, job_id: UUID, now: datetime) -> QueueEstimate | None:
        self.estimated.append(job_id)
        return self.estimates.get(job_id)

    # -- inspection -----------------------------------------------------------------------

    def job(self, job_id: UUID) -> Job:
        """The stored job (fails the test when there is none)."""
        return self.jobs[job_id].job

    def history_types(self, job_id: UUID) -> list[str]:
        """The types of the job's stored history entries, in order."""
        return [row.record.type for row in self.history.get(job_id, [])]

    def history_entries(self, job_id: UUID) -> list[HistoryEntry]:
        """The job's stored history as users see it."""
        return [
            HistoryEntry(seq=row.seq, type=row.record.type, at=row.at or T0, data=row.record.data)
            for row in self.history.get(job_id, [])
        ]

    def _commit(self, staged: _Staged) -> None:
        self.jobs.update(staged.jobs)
        self.wake_at.update(staged.wake_at)
        for job_id, rows in staged.history.items():
            self.history.setdefault(job_id, []).extend(rows)
        self.outbox.update(staged.outbox)
        for job_id in staged.taken_cancels:
            self.pending_cancels.pop(job_id, None)
        for job_id, cancel in staged.pending_cancels.items():
            self.pending_cancels.setdefault(job_id, cancel)
        if staged.writes:
            self.committed.append(staged.writes)


def job_view(job: Job, history: Sequence[HistoryEntry] = ()) -> JobView:
    """A job as users see it."""
    return JobView(
        job_id=job.job_id,
        workflow=job.workflow.name,
        workflow_version=job.workflow.version,
        workflow_hash=job.workflow_hash,
        status=job.status,
        run=job.run,
        priority=job.priority,
        reference=job.reference,
        owner=job.owner,
        params=job.params,
        current_step=job.current_step,
        outputs=job.outputs,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        attempts=[attempt_view(attempt) for attempt in job.attempts],
        history=list(history),
    )


def sample_job_view(**fields: Any) -> JobView:
    """A running ``energy_plan`` job as users see it, created at ``T0``; ``fields``
    override any of its fields."""
    defaults: dict[str, Any] = {
        "job_id": uuid4(),
        "workflow": "energy_plan",
        "workflow_version": "1",
        "workflow_hash": "sha256:x",
        "status": JobStatus.RUNNING,
        "priority": 5,
        "reference": None,
        "params": {},
        "current_step": "optimise",
        "outputs": {},
        "error": None,
        "created_at": T0,
        "updated_at": T0,
        "finished_at": None,
    }
    return JobView(**{**defaults, **fields})


# --- the relay's store -----------------------------------------------------------------


class FakeRelayStore:
    """Outbox rows with their creation times (``RelayStore``)."""

    def __init__(self) -> None:
        self.rows: dict[int, Outgoing] = {}
        self.created_at: dict[int, datetime] = {}
        self.deleted: list[list[int]] = []
        """Ids of every successful delete, claimed or not."""
        self.claimed: list[list[int]] = []
        self.failing_deletes = 0
        self.quarantined: dict[int, tuple[int, str]] = {}
        """Quarantined row ids: (failures, reason)."""
        self._next_id = 1

    def add(self, message: Outgoing, created_at: datetime) -> int:
        """Store a row; returns its id."""
        row_id = self._next_id
        self._next_id += 1
        self.rows[row_id] = message
        self.created_at[row_id] = created_at
        return row_id

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        if self.failing_deletes:
            self.failing_deletes -= 1
            raise ConnectionResetError("database connection lost")
        self._delete(ids)

    @asynccontextmanager
    async def claim_outbox(
        self, older_than: datetime, limit: int, skip: Sequence[int] = ()
    ) -> AsyncIterator[OutboxClaim]:
        ids = sorted(
            row_id
            for row_id, created_at in self.created_at.items()
            if created_at < older_than and row_id not in skip and row_id not in self.quarantined
        )[:limit]
        self.claimed.append(ids)
        to_delete: list[int] = []

        async def delete(published: Sequence[int]) -> None:
            to_delete.extend(published)

        yield OutboxClaim([OutboxRow(row_id, self.rows[row_id]) for row_id in ids], delete)
        self._delete(to_delete)

    async def quarantine_outbox(self, row_id: int, failures: int, reason: str) -> None:
        self.quarantined[row_id] = (failures, reason)

    def _delete(self, ids: Sequence[int]) -> None:
        self.deleted.append(list(ids))
        for row_id in ids:
            self.rows.pop(row_id, None)
            self.created_at.pop(row_id, None)


# --- the broker ------------------------------------------------------------------------


class FakePublisher:
    """A ``Publisher`` that records confirmed messages.

    ``refuse(message)`` says which messages the broker refuses. With
    ``refusal_fails_batch``, a refused message fails every message published
    with it (as a publish to a deleted exchange closes the channel).
    """

    def __init__(
        self,
        refuse: Callable[[Outgoing], bool] | None = None,
        *,
        refusal_fails_batch: bool = False,
    ) -> None:
        self.refuse: Callable[[Outgoing], bool] = refuse or (lambda _message: False)
        self.refusal_fails_batch = refusal_fails_batch
        self.published: list[Outgoing] = []
        """Confirmed messages, in order."""
        self.attempts: list[list[Outgoing]] = []
        """Every call: the messages it tried to publish."""

    def refuse_everything(self) -> None:
        """The broker is away."""
        self.refuse = lambda _message: True

    async def publish(self, message: Outgoing) -> None:
        self.attempts.append([message])
        if self.refuse(message):
            raise PublishError(f"broker refused {message.routing_key!r}")
        self.published.append(message)

    async def publish_all(self, messages: Sequence[Outgoing]) -> list[bool]:
        self.attempts.append(list(messages))
        refused = [self.refuse(message) for message in messages]
        if self.refusal_fails_batch and any(refused):
            return [False] * len(messages)
        self.published.extend(m for m, bad in zip(messages, refused, strict=True) if not bad)
        return [not bad for bad in refused]

    def to(self, routing_key: str) -> list[Outgoing]:
        """Confirmed messages with this routing key."""
        return [message for message in self.published if message.routing_key == routing_key]


def refuse_keys(*routing_keys: str) -> Callable[[Outgoing], bool]:
    """A refusal rule for ``FakePublisher``: messages with these routing keys."""
    keys = set(routing_keys)
    return lambda message: message.routing_key in keys


class FakeSender:
    """Records what committed batches hand over (``Sender``)."""

    def __init__(self) -> None:
        self.rows: list[OutboxRow] = []
        self.notices: list[Outgoing] = []
        self.calls = 0

    async def send(self, rows: Sequence[OutboxRow], notices: Sequence[Outgoing] = ()) -> int:
        self.calls += 1
        self.rows.extend(rows)
        self.notices.extend(notices)
        return 0

    @property
    def messages(self) -> list[Outgoing]:
        """Every durable message sent, in order."""
        return [row.message for row in self.rows]


@dataclass
class FakeMessage:
    """An incoming delivery: the attributes the consume path reads, and how it was settled."""

    body: bytes
    message_id: str | None = None
    redelivered: bool = False
    reply_to: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None
    timestamp: datetime | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    settled: list[str] = field(default_factory=list)
    """``ack``, ``requeue`` or ``reject``, once per call."""
    ack_error: Exception | None = None

    async def ack(self, multiple: bool = False) -> None:
        if self.ack_error is not None:
            raise self.ack_error
        self.settled.append("ack")

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.settled.append("requeue" if requeue else "reject")

    @property
    def incoming(self) -> AbstractIncomingMessage:
        """This fake typed as what handlers take."""
        return cast(AbstractIncomingMessage, self)


def incoming(messages: Iterable[FakeMessage]) -> list[AbstractIncomingMessage]:
    """Fakes typed as what handlers take."""
    return [message.incoming for message in messages]


class FakeQueue:
    """A consumed queue: ``deliver`` hands a message to the consumer's callback."""

    def __init__(self, name: str = "segue.events") -> None:
        self.name = name
        self.callback: Callable[[AbstractIncomingMessage], Awaitable[Any]] | None = None
        self.cancelled: list[str] = []

    async def consume(self, callback: Callable[[AbstractIncomingMessage], Awaitable[Any]]) -> str:
        self.callback = callback
        return "ctag-1"

    async def cancel(self, consumer_tag: str) -> None:
        self.cancelled.append(consumer_tag)
        self.callback = None

    async def deliver(self, message: FakeMessage) -> None:
        """The broker delivers ``message`` to the consumer."""
        assert self.callback is not None, "nobody consumes the queue"
        await self.callback(message.incoming)

    @property
    def typed(self) -> AbstractQueue:
        """This fake typed as what consumers take."""
        return cast(AbstractQueue, self)


class FakeSink:
    """An event sink for the worker SDK: records every event; never fails."""

    def __init__(self) -> None:
        self.events: list[WorkerEvent] = []

    async def send(self, event: WorkerEvent) -> bool:
        self.events.append(event)
        return True

    async def send_once(self, event: WorkerEvent) -> bool:
        self.events.append(event)
        return True

    async def send_or_raise(self, event: WorkerEvent) -> None:
        self.events.append(event)

    def of_type(self, kind: type[WorkerEvent]) -> list[Any]:
        """The recorded events of one kind."""
        return [event for event in self.events if isinstance(event, kind)]
