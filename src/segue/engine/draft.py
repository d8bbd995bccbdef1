"""A decision under construction: the job so far plus effects and records, in order.

``decide`` builds one :class:`Draft` per event and mutates only it, which keeps
each transition function short while ``decide`` as a whole stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from segue.engine.effects import (
    Decision,
    Effect,
    NotifyProgress,
    NotifyResult,
    NotifyStatus,
    Record,
)
from segue.engine.state import Attempt, Job
from segue.protocol.messages import JobStatus, JsonObject


@dataclass
class Draft:
    """The job being changed by one event, and what the change must emit.

    ``before`` is the job's (status, current step) when the event arrived
    (None for a new job); :meth:`decision` announces a change of it once.
    """

    job: Job
    now: datetime
    before: tuple[JobStatus, str | None] | None
    effects: list[Effect] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    @classmethod
    def of(cls, job: Job, now: datetime) -> Draft:
        """A draft that changes an existing job."""
        return cls(job=job, now=now, before=(job.status, job.current_step))

    def change(self, **changes: Any) -> None:
        """Replace fields of the job; every change also stamps ``updated_at``."""
        self.job = replace(self.job, updated_at=self.now, **changes)

    def put_attempt(self, attempt: Attempt) -> None:
        """Store ``attempt``: replace the one with its id, or append it as the newest."""
        attempts = self.job.attempts
        if any(a.attempt_id == attempt.attempt_id for a in attempts):
            attempts = tuple(attempt if a.attempt_id == attempt.attempt_id else a for a in attempts)
        else:
            attempts = (*attempts, attempt)
        self.change(attempts=attempts)

    def record(self, type_: str, **data: Any) -> None:
        """Append a history entry (``data`` must be JSON-ready)."""
        self.records.append(Record(type=type_, data=data))

    def emit(self, effect: Effect) -> None:
        """Append an effect."""
        self.effects.append(effect)

    def decision(self) -> Decision:
        """The finished decision; announces a new (status, step) of a live job first."""
        effects = list(self.effects)
        after = (self.job.status, self.job.current_step)
        if not self.job.status.is_terminal and after != self.before:
            effects.insert(0, NotifyStatus(self.job.job_id, self.job.status, self.job.current_step))
        job, numbered = number_notices(self.job, effects)
        return Decision(job=job, effects=numbered, records=tuple(self.records))


def number_notices(job: Job, effects: list[Effect]) -> tuple[Job, tuple[Effect, ...]]:
    """Give each notice the job's next update sequence number, in order; the job
    remembers the last one given."""
    seq = job.update_seq
    numbered: list[Effect] = []
    for effect in effects:
        if isinstance(effect, NotifyStatus | NotifyProgress | NotifyResult):
            seq += 1
            effect = replace(effect, seq=seq)
        numbered.append(effect)
    if seq != job.update_seq:
        job = replace(job, update_seq=seq)
    return job, tuple(numbered)


def attempt_data(attempt: Attempt) -> JsonObject:
    """The fields naming an attempt in history entries (its map item and iteration
    only when it has them)."""
    data: JsonObject = {
        "step": attempt.step,
        "attempt": attempt.number,
        "attempt_id": str(attempt.attempt_id),
    }
    if attempt.item_index is not None:
        data["item_index"] = attempt.item_index
    if attempt.iteration != 1:
        data["iteration"] = attempt.iteration
    return data
