"""The one shape of every state change: lock the job row, ``decide``, save state,
history and outbox in the same transaction, commit, then publish the outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from segue.engine.effects import Decision
from segue.engine.events import Event, JobSubmitted, TimerFired
from segue.engine.machine import decide
from segue.engine.state import Job
from segue.engine.timers import next_wakeup
from segue.errors import SegueError
from segue.protocol.names import Names
from segue.service.outbox import to_outbox
from segue.service.relay import OutboxRelay
from segue.store.repository import JobTransaction, Store


class ConcurrentSubmissionError(SegueError):
    """Another replica inserted the same job id at the same moment; try again."""


@dataclass(frozen=True)
class Applied:
    """What applying one event did. ``found`` is False when the job does not exist."""

    found: bool
    decision: Decision
    before: Job | None = None


NOT_FOUND = Applied(found=False, decision=Decision())
TIMER_FIRED = TimerFired()


class Applier:
    """Applies engine events to stored jobs, exactly once per committed message."""

    def __init__(
        self, store: Store, relay: OutboxRelay, names: Names, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._relay = relay
        self._names = names
        self._clock = clock
        self._log = structlog.get_logger("segue.applier")

    async def apply(
        self, job_id: UUID, event: Event, precheck: Callable[[Job], str | None] | None = None
    ) -> Applied:
        """Apply ``event`` to an existing job. ``precheck`` may refuse it (returns a reason)."""
        async with self._store.transaction() as tx:
            job = await tx.lock_job(job_id)
            if job is None:
                return NOT_FOUND
            structlog.contextvars.bind_contextvars(step=job.current_step, run=job.run)
            refusal = precheck(job) if precheck else None
            if refusal is not None:
                return Applied(True, Decision(job=job, rejected=refusal), job)
            now = self._clock()
            decision = decide(job, event, now)
            ids = await self._save(tx, job, decision, now)
        await self._relay.publish_now(ids)
        return Applied(True, decision, job)

    async def submit(
        self, job_id: UUID, submission_for: Callable[[Job | None], JobSubmitted | None]
    ) -> Applied | None:
        """Create a job, or apply a resubmission to the job that already exists.

        ``submission_for`` builds the engine event from the existing job (if
        any); it returns None to refuse (unknown workflow), and so does this.
        """
        try:
            return await self._submit_once(job_id, submission_for)
        except ConcurrentSubmissionError:
            # The other insert has committed by now: this time we see the job.
            return await self._submit_once(job_id, submission_for)

    async def _submit_once(
        self, job_id: UUID, submission_for: Callable[[Job | None], JobSubmitted | None]
    ) -> Applied | None:
        async with self._store.transaction() as tx:
            existing = await tx.lock_job(job_id)
            submission = submission_for(existing)
            if submission is None:
                return None
            now = self._clock()
            decision = decide(existing, submission, now)
            if decision.job is None:
                return Applied(existing is not None, decision, existing)
            if existing is None:
                ids = await self._insert(tx, decision, now)
            else:
                ids = await self._save(tx, existing, decision, now)
        await self._relay.publish_now(ids)
        return Applied(existing is not None, decision, existing)

    async def sweep(self, limit: int) -> int:
        """Fire the timers of up to ``limit`` due jobs; returns how many were due."""
        published: list[int] = []
        async with self._store.transaction() as tx:
            now = self._clock()
            jobs = await tx.due_jobs(now, limit)
            for job in jobs:
                decision = decide(job, TIMER_FIRED, now)
                published += await self._save(tx, job, decision, now, force=True)
        await self._relay.publish_now(published)
        return len(jobs)

    async def _insert(self, tx: JobTransaction, decision: Decision, now: datetime) -> list[int]:
        assert decision.job is not None
        outbox = [to_outbox(e, self._names, now) for e in decision.effects]
        ids = await tx.insert_job(
            decision.job, list(decision.records), outbox, next_wakeup(decision.job), at=now
        )
        if ids is None:
            raise ConcurrentSubmissionError(str(decision.job.job_id))
        return ids

    async def _save(
        self,
        tx: JobTransaction,
        before: Job,
        decision: Decision,
        now: datetime,
        force: bool = False,
    ) -> list[int]:
        after = decision.job
        if after is None or (after == before and not decision.records and not force):
            return []
        outbox = [to_outbox(e, self._names, now) for e in decision.effects]
        return await tx.save_job(
            before, after, list(decision.records), outbox, next_wakeup(after), at=now
        )
