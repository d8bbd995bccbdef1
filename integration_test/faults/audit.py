"""After a fault-injection run: read every job back from the database and check
that each one ended exactly once, as planned, with a history that explains it.

The checks are pure functions over rows read once at the end; each returns
the problems it found as readable lines, grouped by :class:`Problem` kind.
Besides the database they read what the workers journalled (which handler
ran which attempt, when: :mod:`.journal`), when the faults struck
(:mod:`.timeline`) and every update published or handed to a follower.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import combinations
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.protocol.messages import JobFinished, JobProgressed, JobStatus, JobStatusChanged, Update

from .injector import INJECTED_PROGRESS_MESSAGE, Injected
from .journal import Outcome, Run, worker_pid
from .plan import CancelTiming, JobPlan
from .timeline import Cause, Timeline

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
    CANCELLED_RAN = "cancelled_ran"
    """A handler ran to its end for an attempt it started after the job was cancelled."""
    CANCEL_LOST = "cancel_lost"
    """A job the test cancelled did not end cancelled, and its history never saw the cancel."""
    DOUBLE_RUN = "double_run"
    """Two workers ran one attempt at once for longer than a stop takes, in a calm moment."""
    FALSE_LOST = "false_lost"
    """An attempt was declared lost while its worker was alive and could reach the broker."""
    UPDATE_ORDER = "update_order"
    """An update numbered after its job's result, without a number, or handed to a
    follower out of order."""


@dataclass(frozen=True)
class HistoryRow:
    """One ``job_events`` row."""

    seq: int
    type: str
    data: Mapping[str, Any]
    at: float
    """When the orchestrator recorded it (wall clock, seconds)."""


@dataclass(frozen=True)
class AttemptRow:
    """One ``step_attempts`` row."""

    attempt_id: UUID
    step: str
    status: str
    ordinal: int
    worker_id: str | None = None


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


@dataclass(frozen=True)
class RawUpdate:
    """Any update of a job as it reached the test's own queue, in publishing order."""

    message_id: str | None
    update: Update


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
            text("SELECT job_id, seq, type, data, at FROM job_events ORDER BY job_id, seq")
        )
        history: defaultdict[UUID, list[HistoryRow]] = defaultdict(list)
        for row in events.mappings():
            history[row["job_id"]].append(
                HistoryRow(row["seq"], row["type"], row["data"], row["at"].timestamp())
            )
        attempt_rows = await connection.execute(
            text(
                "SELECT job_id, attempt_id, step, status, ordinal, worker_id FROM step_attempts "
                "ORDER BY job_id, ordinal"
            )
        )
        attempts: defaultdict[UUID, list[AttemptRow]] = defaultdict(list)
        for row in attempt_rows.mappings():
            attempts[row["job_id"]].append(
                AttemptRow(
                    row["attempt_id"], row["step"], row["status"], row["ordinal"], row["worker_id"]
                )
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


# --- what the workers ran ------------------------------------------------------------------

STOP_WITHIN_S = 2.0
"""A second worker running an attempt must be stopped within this, when all is calm."""


def runs_by_job(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """The journalled runs, by job id (text)."""
    grouped: defaultdict[str, list[Run]] = defaultdict(list)
    for run in runs:
        grouped[run.job_id].append(run)
    return dict(grouped)


def audit_cancels(
    plans: Sequence[JobPlan],
    stored: Mapping[UUID, StoredJob],
    runs: Sequence[Run],
    timeline: Timeline,
    findings: Findings,
) -> dict[str, int]:
    """Every cancel took effect, and no step ran to its end that started after the cancel.

    A job the test cancelled must end ``cancelled``; if it did not, its history
    must at least show the cancel arriving after the end (``cancel_ignored``),
    else the cancel was lost. A handler that starts after its job was cancelled
    was given a task the worker should have dropped (it heard the cancel) or
    that the orchestrator answers with a stop once the worker reports it
    started; the cancelled jobs' steps take 8 s, so only a missing stop lets
    such a run reach its end, unless a fault held the stop back meanwhile.
    Returns counts for the summary line.
    """
    by_job = runs_by_job(runs)
    counts = Counter(
        dict.fromkeys(("cancels_pending", "cancelled_started", "cancelled_ran_in_faults"), 0)
    )
    for plan in plans:
        job = stored.get(plan.job_id)
        if job is None:
            continue
        where = f"job {plan.index} {plan.job_id}"
        types = [row.type for row in job.history]
        cancelled = next((row for row in job.history if row.type == "job_cancelled"), None)
        if plan.cancel is not None:
            if job.status is not JobStatus.CANCELLED and "cancel_ignored" not in types:
                line = f"{where} (cancel {plan.cancel}): ended {job.status}, no cancel recorded"
                findings.add(Problem.CANCEL_LOST, [line])
            if cancelled is not None and cancelled.data.get("before_submission"):
                counts["cancels_pending"] += 1
        if cancelled is None:
            continue
        for run in by_job.get(str(plan.job_id), []):
            if run.started <= cancelled.at:
                continue
            counts["cancelled_started"] += 1
            if not run.ran_to_end:
                continue
            ended = run.ended if run.ended is not None else run.started
            if not timeline.calm(run.started, ended):
                counts["cancelled_ran_in_faults"] += 1
                continue
            findings.add(
                Problem.CANCELLED_RAN,
                [
                    f"{where}: worker {run.worker_id} ran {run.step} (attempt {run.attempt_id}) "
                    f"to its end ({run.outcome}) from {run.started - cancelled.at:+.2f}s "
                    f"to {ended - cancelled.at:+.2f}s after the cancel"
                ],
            )
    return dict(counts)


def audit_double_runs(
    runs: Sequence[Run], timeline: Timeline, findings: Findings
) -> dict[str, int]:
    """No attempt ran on two workers at once for longer than a stop takes.

    A task delivered twice may reach a second worker while the first runs it;
    the second reports ``started`` and must be stopped by the orchestrator's
    answer. Overlaps longer than :data:`STOP_WITHIN_S` count, unless a fault
    (an orchestrator down or frozen, a service restarting) held the answer
    back. Returns counts for the summary line.
    """
    by_attempt: defaultdict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_attempt[run.attempt_id].append(run)
    counts = Counter(
        dict.fromkeys(
            ("attempts_on_two_workers", "second_runs_stopped", "double_runs_in_faults"), 0
        )
    )
    for attempt_id, its_runs in by_attempt.items():
        if len({run.worker_id for run in its_runs}) < 2:
            continue
        counts["attempts_on_two_workers"] += 1
        counts["second_runs_stopped"] += sum(run.outcome is Outcome.STOPPED for run in its_runs[1:])
        for first, second in combinations(its_runs, 2):
            if first.worker_id == second.worker_id:
                continue
            start = max(first.started, second.started)
            end = min(_run_end(first, timeline), _run_end(second, timeline))
            if end - start <= STOP_WITHIN_S:
                continue
            if not timeline.calm(start, start + STOP_WITHIN_S):
                counts["double_runs_in_faults"] += 1
                continue
            findings.add(
                Problem.DOUBLE_RUN,
                [
                    f"job {first.job_id} attempt {attempt_id} ({first.step}): workers "
                    f"{first.worker_id} ({first.outcome or 'no end'}) and {second.worker_id} "
                    f"({second.outcome or 'no end'}) both ran it for {end - start:.1f}s "
                    f"from {timeline.since_start(start)}"
                ],
            )
    return dict(counts)


def _runs_of(runs: Sequence[Run], timeline: Timeline) -> str:
    """The handler runs of an attempt, as the workers journalled them."""
    if not runs:
        return "no handler run of the attempt"
    described = (
        f"{run.worker_id} from {timeline.since_start(run.started)} to "
        f"{'?' if run.ended is None else timeline.since_start(run.ended)} "
        f"({run.outcome or 'no end'})"
        for run in runs
    )
    return "handler runs: " + ", ".join(described)


def _run_end(run: Run, timeline: Timeline) -> float:
    """When a run ended: its end line, else its worker's death, else the end of the run."""
    if run.ended is not None:
        return run.ended
    pid = run.pid
    died = None if pid is None else timeline.worker_end(pid)
    return died or timeline.run_ended or run.started


def audit_losses(
    stored: Mapping[UUID, StoredJob],
    runs: Sequence[Run],
    timeline: Timeline,
    heartbeat_s: float,
    findings: Findings,
) -> dict[str, int]:
    """Every attempt declared lost had lost its worker: killed, exited, or cut off
    from the broker while RabbitMQ restarted.

    A worker alive and connected throughout keeps heartbeating; if the
    orchestrator was frozen, restarting or slow meanwhile, the heartbeats wait
    in the events queue, and a backlog must never pass for a crash. Returns
    counts for the summary line.
    """
    broker = frozenset({Cause.RABBITMQ_RESTART})
    counts = Counter(dict.fromkeys(("lost_with_their_worker", "lost_in_broker_restart"), 0))
    by_attempt: defaultdict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_attempt[run.attempt_id].append(run)
    for job in stored.values():
        for row in job.history:
            if row.type != "step_lost":
                continue
            worker_id = row.data.get("worker_id")
            pid = worker_pid(worker_id)
            life = None if pid is None else timeline.workers.get(pid)
            if life is not None and life.ended is not None and life.ended <= row.at:
                counts["lost_with_their_worker"] += 1
                continue
            if not timeline.calm(row.at - heartbeat_s, row.at, causes=broker):
                counts["lost_in_broker_restart"] += 1
                continue
            alive = "not a worker of the test" if life is None else "alive"
            if life is not None and life.ended is not None:
                alive = f"alive until {timeline.since_start(life.ended)}"
            findings.add(
                Problem.FALSE_LOST,
                [
                    f"job {job.job_id} attempt {row.data.get('attempt_id')} "
                    f"({row.data.get('step')}) lost at {timeline.since_start(row.at)} "
                    f"({row.data.get('reason')}); worker {worker_id} {alive}; "
                    f"{timeline.nearest(row.at)}; "
                    f"{_runs_of(by_attempt.get(str(row.data.get('attempt_id')), []), timeline)}; "
                    "history before it: "
                    + ", ".join(
                        _entry(entry, timeline) for entry in job.history if entry.seq <= row.seq
                    )[-900:]
                ],
            )
    return dict(counts)


def _entry(entry: HistoryRow, timeline: Timeline) -> str:
    """A history entry in a line: type, time and the worker it names, if any."""
    worker = entry.data.get("worker_id")
    return f"{entry.type}@{timeline.since_start(entry.at)}" + (f"/{worker}" if worker else "")


# --- updates -------------------------------------------------------------------------------


def audit_updates(
    plans: Sequence[JobPlan],
    raw_updates: Mapping[UUID, Sequence[RawUpdate]],
    delivered: Mapping[UUID, Sequence[Update] | None],
    findings: Findings,
) -> dict[str, int]:
    """Updates are numbered, none after the result, and followers get them in order.

    Published (raw): every update carries ``seq``, and no status or progress
    update is numbered above its job's result, so none can come after it for
    a follower. Handed to the test's follower (``handle.updates()``): numbered,
    strictly increasing, ending with the result, never back to an earlier step.
    Returns counts for the summary line: ``stale_updates`` were published with
    a number below one published before (a republish, or a late notice): the
    client had to drop them.
    """
    counts = Counter(dict.fromkeys(("stale_updates", "updates_delivered"), 0))
    for plan in plans:
        where = f"job {plan.index} {plan.job_id}"
        raws = raw_updates.get(plan.job_id, [])
        findings.add(Problem.UPDATE_ORDER, _published_problems(where, raws))
        newest = -1
        for raw in raws:
            seq = raw.update.seq
            if seq is not None:
                counts["stale_updates"] += seq < newest
                newest = max(newest, seq)
        got = delivered.get(plan.job_id)
        if got is not None:
            counts["updates_delivered"] += len(got)
            findings.add(Problem.UPDATE_ORDER, _delivered_problems(where, plan, got))
    return dict(counts)


def _published_problems(where: str, raws: Sequence[RawUpdate]) -> list[str]:
    results = [raw.update.seq for raw in raws if isinstance(raw.update, JobFinished)]
    last = max((seq for seq in results if seq is not None), default=None)
    problems = []
    for raw in raws:
        update = raw.update
        if update.seq is None:
            problems.append(f"{where}: {update.type} published without seq")
        elif last is not None and not isinstance(update, JobFinished) and update.seq > last:
            problems.append(
                f"{where}: {update.type} with seq {update.seq} after the result's {last}"
            )
    return problems


def _delivered_problems(where: str, plan: JobPlan, got: Sequence[Update]) -> list[str]:
    """The follower's view: numbered, increasing, ends with the result, never steps back."""
    if not got or not isinstance(got[-1], JobFinished):
        return [f"{where}: the follower's updates do not end with the result"]
    problems = []
    previous_seq, previous_step = -1, -1
    for position, update in enumerate(got):
        seq = update.seq
        rebuilt = isinstance(update, JobFinished) and position == len(got) - 1 and seq is None
        if seq is None and not rebuilt:
            problems.append(f"{where}: follower got {update.type} #{position} without seq")
        elif seq is not None and seq <= previous_seq:
            problems.append(f"{where}: follower got seq {seq} after {previous_seq}")
        previous_seq = previous_seq if seq is None else seq
        step = update.step if isinstance(update, JobStatusChanged | JobProgressed) else None
        if step in plan.path:
            index = plan.path.index(step)
            if index < previous_step:
                problems.append(f"{where}: follower got step {step} after a later step")
            previous_step = max(previous_step, index)
    return problems


def cancel_kinds(plans: Iterable[JobPlan]) -> dict[str, int]:
    """How many jobs the test cancels, by when (for the summary line)."""
    kinds = Counter(plan.cancel for plan in plans if plan.cancel is not None)
    return {f"cancels_{timing}": kinds.get(timing, 0) for timing in CancelTiming}
