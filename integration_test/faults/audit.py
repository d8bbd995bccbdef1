"""After a fault-injection run: read every job back from the database and check
that each one ended exactly once, as planned, with a history that explains it.

The checks are pure functions over rows read once at the end; each returns
the problems it found as readable lines, grouped by :class:`Problem` kind.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.protocol.messages import JobFinished, JobStatus

from .injector import INJECTED_PROGRESS_MESSAGE, Injected
from .plan import JobPlan

TERMINAL_RECORDS = {
    JobStatus.SUCCEEDED: "job_succeeded",
    JobStatus.FAILED: "job_failed",
    JobStatus.CANCELLED: "job_cancelled",
    JobStatus.TIMED_OUT: "job_timed_out",
}
RESULT_RECORDS = ("step_succeeded", "step_failed")
ALLOWED_AFTER_END = frozenset({"event_ignored", "cancel_ignored", "submission_ignored"})


class Problem(StrEnum):
    """What can be wrong with a job after the run."""

    LOST = "lost"
    """No job row: the submission vanished."""
    STUCK = "stuck"
    """The job is not terminal."""
    WRONG_OUTCOME = "wrong_outcome"
    """Terminal, but not as planned (status or error kind)."""
    DUPLICATED = "duplicated"
    """A step result applied twice, two terminal records, or two results sent."""
    HISTORY = "history"
    """The history does not explain the final state."""
    CLIENT = "client"
    """The client SDK did not return the planned result."""
    NOT_FENCED = "not_fenced"
    """An injected event was not recorded as ignored, or changed something."""


@dataclass(frozen=True)
class HistoryRow:
    """One ``job_events`` row."""

    seq: int
    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class AttemptRow:
    """One ``step_attempts`` row."""

    attempt_id: UUID
    step: str
    status: str
    ordinal: int


@dataclass(frozen=True)
class StoredJob:
    """A job as the database holds it after the run."""

    job_id: UUID
    status: JobStatus
    error: Mapping[str, Any] | None
    last_seq: int
    history: tuple[HistoryRow, ...]
    attempts: tuple[AttemptRow, ...]


@dataclass(frozen=True)
class RawResult:
    """A ``job_result`` message as it reached the test's own queue on the updates exchange."""

    message_id: str | None
    result: JobFinished


@dataclass
class Findings:
    """Every problem found, by kind."""

    problems: dict[Problem, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: Problem, lines: Iterable[str]) -> None:
        """Record problems of ``kind``."""
        self.problems[kind].extend(lines)

    def count(self, kind: Problem) -> int:
        """How many problems of ``kind`` were found."""
        return len(self.problems.get(kind, []))

    def report(self, limit: int = 40) -> str:
        """The problems as text, at most ``limit`` lines per kind."""
        lines = []
        for kind, found in self.problems.items():
            if found:
                lines.append(f"{kind} ({len(found)}):")
                lines.extend(f"  {line}" for line in found[:limit])
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return any(self.problems.values())


async def load_stored_jobs(engine: AsyncEngine) -> dict[UUID, StoredJob]:
    """Every job with its history and attempts, read in one snapshot."""
    async with engine.connect() as plain:
        connection = await plain.execution_options(isolation_level="REPEATABLE READ")
        jobs = (
            await connection.execute(text("SELECT job_id, status, error, last_seq FROM jobs"))
        ).mappings()
        job_rows = list(jobs)
        events = await connection.execute(
            text("SELECT job_id, seq, type, data FROM job_events ORDER BY job_id, seq")
        )
        history: defaultdict[UUID, list[HistoryRow]] = defaultdict(list)
        for row in events.mappings():
            history[row["job_id"]].append(HistoryRow(row["seq"], row["type"], row["data"]))
        attempt_rows = await connection.execute(
            text(
                "SELECT job_id, attempt_id, step, status, ordinal FROM step_attempts "
                "ORDER BY job_id, ordinal"
            )
        )
        attempts: defaultdict[UUID, list[AttemptRow]] = defaultdict(list)
        for row in attempt_rows.mappings():
            attempts[row["job_id"]].append(
                AttemptRow(row["attempt_id"], row["step"], row["status"], row["ordinal"])
            )
    return {
        row["job_id"]: StoredJob(
            job_id=row["job_id"],
            status=JobStatus(row["status"]),
            error=row["error"],
            last_seq=row["last_seq"],
            history=tuple(history[row["job_id"]]),
            attempts=tuple(attempts[row["job_id"]]),
        )
        for row in job_rows
    }


def audit_jobs(
    plans: Sequence[JobPlan], stored: Mapping[UUID, StoredJob], findings: Findings
) -> None:
    """Each planned job exists, ended as planned, once, and its history explains it."""
    for plan in plans:
        job = stored.get(plan.job_id)
        if job is None:
            findings.add(Problem.LOST, [f"job {plan.index} {plan.job_id}: no job row"])
            continue
        if not job.status.is_terminal:
            findings.add(Problem.STUCK, [f"job {plan.index} {plan.job_id}: {job.status}"])
            continue
        findings.add(Problem.WRONG_OUTCOME, _outcome_problems(plan, job))
        findings.add(Problem.DUPLICATED, _applied_twice(plan, job))
        findings.add(Problem.HISTORY, _history_problems(plan, job))


def _outcome_problems(plan: JobPlan, job: StoredJob) -> list[str]:
    """The job ended with the planned status and error kind (and step, for a failure)."""
    error = job.error or {}
    as_planned = job.status is plan.expected and error.get("kind") == plan.expected_error_kind
    if as_planned and plan.expected is JobStatus.FAILED:
        as_planned = error.get("step") == plan.params.get("fail_at")
    if as_planned:
        return []
    return [
        f"job {plan.index} {plan.job_id}: ended {job.status} (error {job.error}), "
        f"planned {plan.expected} ({plan.expected_error_kind}) with params {plan.params}"
    ]


def _applied_twice(plan: JobPlan, job: StoredJob) -> list[str]:
    """A step result recorded twice for one attempt, or a step that succeeded twice."""
    problems = []
    results = Counter(
        str(row.data.get("attempt_id")) for row in job.history if row.type in RESULT_RECORDS
    )
    problems += [
        f"job {plan.index} {plan.job_id}: attempt {attempt_id} has {count} result records"
        for attempt_id, count in results.items()
        if count > 1
    ]
    succeeded = Counter(a.step for a in job.attempts if a.status == "succeeded")
    problems += [
        f"job {plan.index} {plan.job_id}: step {step} succeeded {count} times"
        for step, count in succeeded.items()
        if count > 1
    ]
    terminal = [row.type for row in job.history if row.type in TERMINAL_RECORDS.values()]
    if len(terminal) > 1:
        problems.append(f"job {plan.index} {plan.job_id}: terminal records {terminal}")
    return problems


def _history_problems(plan: JobPlan, job: StoredJob) -> list[str]:
    """Does the history explain the job: contiguous, submitted once, ended once as stored?"""
    where = f"job {plan.index} {plan.job_id}"
    history = job.history
    problems = []
    seqs = [row.seq for row in history]
    if seqs != list(range(1, len(history) + 1)) or job.last_seq != len(history):
        problems.append(
            f"{where}: seq not contiguous 1..n ({seqs[:5]}..., last_seq {job.last_seq})"
        )
    types = [row.type for row in history]
    if types.count("job_submitted") != 1 or types[:1] != ["job_submitted"]:
        problems.append(
            f"{where}: job_submitted {types.count('job_submitted')} times, first {types[:1]}"
        )
    ends = [i for i, kind in enumerate(types) if kind in TERMINAL_RECORDS.values()]
    if not ends or types[ends[-1]] != TERMINAL_RECORDS[job.status]:
        problems.append(
            f"{where}: status {job.status} but terminal records {[types[i] for i in ends]}"
        )
    elif set(types[ends[-1] + 1 :]) - ALLOWED_AFTER_END:
        problems.append(f"{where}: changes after the end: {types[ends[-1] + 1 :]}")
    if "engine_error" in types:
        problems.append(f"{where}: engine_error records")
    if job.status is JobStatus.SUCCEEDED:
        succeeded = Counter(a.step for a in job.attempts if a.status == "succeeded")
        if succeeded != Counter(plan.path) or types.count("step_succeeded") != len(plan.path):
            problems.append(f"{where}: succeeded steps {dict(succeeded)}, planned {plan.path}")
    return problems


def audit_results(
    plans: Sequence[JobPlan],
    client_results: Mapping[UUID, JobFinished | str],
    raw_results: Mapping[UUID, Sequence[RawResult]],
    findings: Findings,
) -> int:
    """Check the client got the planned result and exactly one result was sent per job.

    Returns how many raw result messages were redeliveries (a message id seen
    again, e.g. re-published after a crash), which are allowed.
    """
    redeliveries = 0
    for plan in plans:
        where = f"job {plan.index} {plan.job_id}"
        got = client_results.get(plan.job_id, "no result")
        if isinstance(got, str):
            findings.add(Problem.CLIENT, [f"{where}: {got}"])
        elif got.status is not plan.expected:
            findings.add(
                Problem.CLIENT, [f"{where}: client got {got.status}, planned {plan.expected}"]
            )
        raw = raw_results.get(plan.job_id, [])
        distinct = {item.message_id for item in raw}
        redeliveries += len(raw) - len(distinct)
        if len(distinct) != 1:
            findings.add(Problem.DUPLICATED, [f"{where}: {len(distinct)} distinct results sent"])
        elif raw[0].result.status is not plan.expected:
            findings.add(Problem.WRONG_OUTCOME, [f"{where}: result says {raw[0].result.status}"])
    return redeliveries


def audit_injections(
    injected: Sequence[Injected], stored: Mapping[UUID, StoredJob], findings: Findings
) -> None:
    """Each injected event left an ``event_ignored`` record, and injected progress left none."""
    ignored: Counter[tuple[str, str]] = Counter()
    for job in stored.values():
        for row in job.history:
            if row.type == "event_ignored":
                ignored[(str(row.data.get("attempt_id")), str(row.data.get("event")))] += 1
            elif _injected_progress(row):
                findings.add(Problem.NOT_FENCED, [f"job {job.job_id}: injected progress applied"])
    wanted = Counter(
        (str(item.attempt_id), item.event) for item in injected if item.event != "step_progress"
    )
    for key, count in wanted.items():
        if ignored[key] < count:
            attempt_id, event = key
            line = f"attempt {attempt_id}: {count} injected {event}, {ignored[key]} ignored"
            findings.add(Problem.NOT_FENCED, [line])


def _injected_progress(row: HistoryRow) -> bool:
    return row.type == "step_progress" and row.data.get("message") == INJECTED_PROGRESS_MESSAGE
