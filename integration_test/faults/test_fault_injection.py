"""Failure semantics under fire: hundreds of jobs run while orchestrators and
workers are SIGKILLed, the orchestrators are frozen, RabbitMQ and PostgreSQL
restart, task messages are delivered twice, jobs are cancelled before, at and
after their submission, and crafted duplicate, reordered and stale worker
events arrive; afterwards every job has ended exactly once, as planned, and its
history explains how.

``SEGUE_FAULT_JOBS`` sets the number of jobs (default 300; ``bench/fault_injection.sh``
runs 3000), ``SEGUE_FAULT_RATE`` how many are submitted per second (default 5),
and ``SEGUE_FAULT_SEED`` replays a run's random choices (the seed is printed;
run pytest with ``-s`` to see it and the summary line). Every 300 jobs bring
one round of faults: three orchestrator kill events (one replica, or both at
once), two freezes of every orchestrator (SIGSTOP for longer than a heartbeat
timeout, so the workers' heartbeats pile up), six worker kills (a worker
running a step, when the database says which), one RabbitMQ and one
PostgreSQL restart, and one burst of 24 jobs submitted at once.

Besides the database, the audit reads what the workers journalled (which
handler ran which attempt, when), every update published and every update
handed to the test's followers. The summary line counts, among others:

- ``cancelled_ran``: steps that ran to their end although they started after
  their job was cancelled (a worker must drop a task it heard cancelled, and
  a ``started`` for an ended attempt is answered with a stop);
- ``cancel_lost``: cancelled jobs (also cancels published before their
  submission) that did not end cancelled;
- ``double_run``: attempts two workers ran at once for longer than a stop
  takes (a task delivered twice is run by one worker);
- ``false_lost``: attempts declared lost while their worker was alive and
  connected (a backlog of heartbeats must not look like a crash);
- ``update_order``: updates numbered after their job's result, or handed to a
  follower out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import aio_pika
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.client import JobHandle, SegueClient, UpdateTimeoutError
from segue.demo import demo_handlers
from segue.protocol.messages import JobFinished, JobStatus, StepTask, Update
from segue.protocol.names import Names
from segue.store.repository import Store

from .audit import (
    Findings,
    Problem,
    RawUpdate,
    StoredJob,
    audit_cancels,
    audit_double_runs,
    audit_injections,
    audit_jobs,
    audit_losses,
    audit_results,
    audit_updates,
    cancel_kinds,
    load_stored_jobs,
)
from .conftest import DEMO_CONFIG, REPO, tap_queue_name, task_tap_queue_name
from .injector import EventInjector, Injected, InjectionKind
from .journal import JOURNAL_ENV, Run, read_runs
from .plan import (
    HEARTBEAT_S,
    WORKFLOW,
    CancelTiming,
    Fault,
    FaultKind,
    JobPlan,
    is_slow,
    plan_faults,
    plan_jobs,
    write_workflow_file,
)
from .processes import ProcessGroup, log_tail, orchestrator_env, segue_argv, worker_env
from .services import restart_postgres, restart_rabbitmq
from .taps import (
    UPDATE_BINDING,
    TaskDuplicator,
    dead_letter,
    drain_queue,
    drain_updates,
    open_result_tap,
    results_of,
)
from .timeline import Cause, Timeline

T = TypeVar("T")

JOBS_ENV = "SEGUE_FAULT_JOBS"
SEED_ENV = "SEGUE_FAULT_SEED"
RATE_ENV = "SEGUE_FAULT_RATE"
DEFAULT_JOBS = 300
DEFAULT_RATE_PER_S = 5.0
ORCHESTRATORS = 2
WORKERS = 4
WORKER_CONCURRENCY = 3
INJECT_INTERVAL_S = 0.2
RESULT_TIMEOUT_S = 240.0
"""How long after its submission a job may take to end, faults included."""
RETRY_PAUSE_S = 0.5
RETRY_FOR_S = 120.0
SETTLE_TIMEOUT_S = 30.0
RESTART_AFTER_S = (0.2, 2.0)
SERVICE_DOWN_S = (1.0, 3.0)
PAUSED_S = (4.5, 6.0)
"""How long the orchestrators stay frozen: longer than a heartbeat timeout (3 s)."""
DUPLICATE_TASK_SHARE = 0.08
"""Of the tasks of ordinary jobs, how many are delivered twice (of slow jobs: all)."""
DUPLICATE_AFTER_S = (0.05, 1.0)
"""When the second copy of a task is published, after the first."""
UPDATES_AFTER_RESULT_S = 5.0
"""How long a follower's updates may trail its result (they come from one feed)."""
JOURNAL_WORKER = "integration_test.faults.journal:worker"
TASK_DROPPED_LOG = '"event": "task_cancelled"'
"""What a worker logs when it drops a task whose attempt it heard cancelled."""


# --- the processes -------------------------------------------------------------------------


def jobs_from_env() -> int:
    """How many jobs to run: ``SEGUE_FAULT_JOBS``, default 300."""
    return int(os.environ.get(JOBS_ENV) or DEFAULT_JOBS)


def rate_from_env() -> float:
    """Submissions per second: ``SEGUE_FAULT_RATE``, default 5."""
    return float(os.environ.get(RATE_ENV) or DEFAULT_RATE_PER_S)


def timeout_s(jobs: int, rate: float) -> float:
    """The test's time limit: 15 minutes, more for long runs (submitting takes jobs/rate)."""
    return max(900.0, 2 * jobs / rate + RESULT_TIMEOUT_S + 300)


# --- faults --------------------------------------------------------------------------------


BUSY_WORKERS = "SELECT DISTINCT worker_id FROM step_attempts WHERE status = 'running'"


@dataclass
class Chaos:
    """Causes the planned faults, one after the other, at their planned moments."""

    rng: random.Random
    orchestrators: ProcessGroup
    workers: ProcessGroup
    sql_engine: AsyncEngine
    amqp_url: str
    done: Counter[str] = field(default_factory=Counter)
    timeline: Timeline = field(default_factory=Timeline)

    async def run(self, faults: Sequence[Fault], started: float) -> None:
        """Cause every fault of ``faults`` (each no earlier than planned)."""
        for fault in faults:
            await asyncio.sleep(max(0.0, started + fault.at_s - time.monotonic()))
            await self.cause(fault.kind)
            self.done[fault.kind] += 1

    async def cause(self, kind: FaultKind) -> None:
        """Cause one fault now (and enter it in the timeline, but for worker kills:
        the worker group keeps the lives of its processes)."""
        start = time.time()
        match kind:
            case FaultKind.ORCHESTRATOR_KILL:
                await self._kill_orchestrators()
                cause = Cause.ORCHESTRATOR_KILL
            case FaultKind.ORCHESTRATOR_PAUSE:
                everyone = list(range(self.orchestrators.size))
                await self.orchestrators.pause(everyone, self.rng.uniform(*PAUSED_S))
                cause = Cause.ORCHESTRATOR_PAUSE
            case FaultKind.WORKER_KILL:
                await self._kill_busy_worker()
                return
            case FaultKind.RABBITMQ_RESTART:
                await restart_rabbitmq(self.amqp_url, self.rng.uniform(*SERVICE_DOWN_S))
                cause = Cause.RABBITMQ_RESTART
            case FaultKind.POSTGRES_RESTART:
                await restart_postgres(self.rng.uniform(*SERVICE_DOWN_S))
                cause = Cause.POSTGRES_RESTART
        self.timeline.add(cause, start, time.time())

    async def _kill_orchestrators(self) -> None:
        """Kill one replica, or (one time in three) all of them at once."""
        everyone = self.rng.random() < 1 / 3
        indexes = list(range(self.orchestrators.size))
        chosen = indexes if everyone else [self.rng.choice(indexes)]
        await self.orchestrators.kill_many(chosen, self.rng.uniform(*RESTART_AFTER_S))
        self.done["orchestrators_killed"] += len(chosen)

    async def _kill_busy_worker(self) -> None:
        """Kill a worker that is running a step, if the database can say which one is."""
        slot_by_pid = self.workers.pids()
        busy = [slot_by_pid[pid] for pid in await self._busy_worker_pids() if pid in slot_by_pid]
        if busy:
            self.done["worker_kills_mid_step"] += 1
        index = self.rng.choice(busy or list(range(self.workers.size)))
        await self.workers.kill(index, self.rng.uniform(*RESTART_AFTER_S))

    async def _busy_worker_pids(self) -> list[int]:
        """Pids of workers with a running attempt (worker ids are ``host:pid``)."""
        try:
            async with self.sql_engine.connect() as connection:
                rows = (await connection.exec_driver_sql(BUSY_WORKERS)).scalars().all()
        except Exception:  # PostgreSQL is restarting: pick any worker
            return []
        pids = []
        for worker_id in rows:
            with contextlib.suppress(ValueError, AttributeError):
                pids.append(int(str(worker_id).rsplit(":", 1)[1]))
        return sorted(pids)


# --- the client's side ---------------------------------------------------------------------


@dataclass
class ClientStats:
    """What the test's client went through."""

    submit_retries: int = 0
    cancel_retries: int = 0
    results: dict[UUID, JobFinished | str] = field(default_factory=dict)


async def retrying(action: Callable[[], Awaitable[T]], stats: Counter[str], label: str) -> T:
    """Run ``action`` until it succeeds (the broker may be restarting), for up to two minutes."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            return await action()
        except asyncio.CancelledError:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            stats[label] += 1
            await asyncio.sleep(RETRY_PAUSE_S)


async def wait_for_orchestrator(client: SegueClient) -> None:
    """Wait until an orchestrator answers queries."""
    retries: Counter[str] = Counter()
    await retrying(client.workflows, retries, "workflows")


async def exists(client: SegueClient, job_id: UUID) -> None:
    """Return once the orchestrator knows the job (raises while it does not)."""
    if await client.get(job_id, include_history=False) is None:
        raise LookupError(f"job {job_id} not stored yet")


@dataclass(frozen=True)
class Followed:
    """What the test's follower of one job got."""

    result: JobFinished | str
    """The result, or what went wrong."""
    updates: list[Update] | None
    """Every update ``handle.updates()`` gave, up to the result (None: it gave no result)."""


async def read_updates(handle: JobHandle) -> list[Update]:
    """Every update the handle gives, up to and including the result."""
    return [update async for update in handle.updates()]


async def follow(
    client: SegueClient, plan: JobPlan, handle: JobHandle, retries: Counter[str]
) -> Followed:
    """Cancel the job if planned (after its start, or right away), then wait for its
    result and the updates that led to it."""
    reading = asyncio.create_task(read_updates(handle))
    try:
        result = await cancel_and_wait(client, plan, handle, retries)
    except BaseException:
        reading.cancel()
        raise
    if isinstance(result, str):
        reading.cancel()
        return Followed(result, None)
    done, _ = await asyncio.wait([reading], timeout=UPDATES_AFTER_RESULT_S)
    if not done:
        reading.cancel()
        return Followed(result, None)
    return Followed(result, reading.result())


async def cancel_and_wait(
    client: SegueClient, plan: JobPlan, handle: JobHandle, retries: Counter[str]
) -> JobFinished | str:
    """Cancel the job if planned, then wait for its result (a string says what went wrong)."""
    try:
        if plan.cancel is CancelTiming.AFTER_START:
            await retrying(lambda: exists(client, plan.job_id), retries, "cancel_lookups")
            await asyncio.sleep(plan.cancel_after_s or 0.0)
        if plan.cancel in (CancelTiming.AFTER_START, CancelTiming.AT_SUBMIT):
            await retrying(lambda: client.cancel(plan.job_id), retries, "cancel")
        return await handle.result(timeout=RESULT_TIMEOUT_S)
    except UpdateTimeoutError:
        return f"no result within {RESULT_TIMEOUT_S:g} s"
    except Exception as exc:
        return f"client error: {type(exc).__name__}: {exc}"


async def submit_all(
    client: SegueClient, plans: Sequence[JobPlan], retries: Counter[str]
) -> list[asyncio.Task[Followed]]:
    """Submit each job at its planned moment (a cancel planned before the submission
    goes first); a task per job follows it to its result."""
    started = time.monotonic()
    followers = []
    for plan in plans:
        await asyncio.sleep(max(0.0, started + plan.submit_at_s - time.monotonic()))
        if plan.cancel is CancelTiming.BEFORE_SUBMIT:

            async def cancel(plan: JobPlan = plan) -> None:
                await client.cancel(plan.job_id)

            await retrying(cancel, retries, "cancel")
            await asyncio.sleep(plan.cancel_after_s or 0.0)

        async def submit(plan: JobPlan = plan) -> JobHandle:
            return await client.submit(WORKFLOW, plan.params, job_id=plan.job_id)

        handle = await retrying(submit, retries, "submit")
        followers.append(asyncio.create_task(follow(client, plan, handle, retries)))
    return followers


# --- after the run -------------------------------------------------------------------------


async def wait_until_settled(store: Store, amqp_url: str, names: Names) -> tuple[int, int]:
    """Wait for an empty outbox and events queue; returns (outbox rows, events) left."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    outbox = events = -1
    while time.monotonic() < deadline:
        outbox = await store.outbox_size()
        events = await queue_depth(amqp_url, names.events_queue)
        if outbox == 0 and events == 0:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # messages being handled right now
    return await store.outbox_size(), await queue_depth(amqp_url, names.events_queue)


async def queue_depth(amqp_url: str, queue_name: str) -> int:
    """Messages ready in ``queue_name``."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count or 0


def summary_line(
    jobs: int,
    statuses: Mapping[JobStatus, int],
    chaos: Chaos,
    injected: Mapping[InjectionKind, int],
    findings: Findings,
    extras: Mapping[str, object],
) -> str:
    """The one line a run reports."""
    fields: dict[str, object] = {
        "jobs": jobs,
        "succeeded": statuses.get(JobStatus.SUCCEEDED, 0),
        "failed": statuses.get(JobStatus.FAILED, 0),
        "cancelled": statuses.get(JobStatus.CANCELLED, 0),
        "orchestrator_kills": chaos.done["orchestrators_killed"],
        "worker_kills": chaos.done[FaultKind.WORKER_KILL],
        "worker_kills_mid_step": chaos.done["worker_kills_mid_step"],
        "rabbitmq_restarts": chaos.done[FaultKind.RABBITMQ_RESTART],
        "postgres_restarts": chaos.done[FaultKind.POSTGRES_RESTART],
        "orchestrator_pauses": chaos.done[FaultKind.ORCHESTRATOR_PAUSE],
        "duplicates": injected.get(InjectionKind.DUPLICATE, 0),
        "duplicate_starts": injected.get(InjectionKind.DUPLICATE_STARTED, 0),
        "reordered": injected.get(InjectionKind.REORDERED, 0),
        "stale": injected.get(InjectionKind.STALE, 0),
        "lost": findings.count(Problem.LOST),
        "duplicated": findings.count(Problem.DUPLICATED),
        "stuck": findings.count(Problem.STUCK),
        "wrong": findings.count(Problem.WRONG_OUTCOME),
        "cancelled_ran": findings.count(Problem.CANCELLED_RAN),
        "cancel_lost": findings.count(Problem.CANCEL_LOST),
        "double_run": findings.count(Problem.DOUBLE_RUN),
        "false_lost": findings.count(Problem.FALSE_LOST),
        "update_order": findings.count(Problem.UPDATE_ORDER),
        **extras,
    }
    return "fault-injection: " + " ".join(f"{key}={value}" for key, value in fields.items())


def crash_counts(stored: Iterable[StoredJob]) -> dict[str, int]:
    """How often the orchestrator saw a worker vanish: attempts lost, tasks redelivered."""
    records = Counter(row.type for job in stored for row in job.history)
    return {
        "attempts_lost": records["step_lost"],
        "tasks_redelivered": records["step_redelivered"],
        "events_ignored": records["event_ignored"],
    }


def process_report(groups: Sequence[ProcessGroup]) -> str:
    """Processes that exited on their own, with the end of their logs."""
    lines = []
    for group in groups:
        for exit_ in group.unexpected_exits:
            lines.append(
                f"{exit_.role} pid {exit_.pid} exited {exit_.returncode} after {exit_.uptime_s}s:"
            )
            lines.append(log_tail(exit_.log, 8))
    return "\n".join(lines)


# --- the run -----------------------------------------------------------------------------


def tasks_dropped_unrun(worker_logs: Iterable[Path]) -> int:
    """How many tasks the workers dropped unrun because they had heard their cancel."""
    return sum(path.read_text(errors="replace").count(TASK_DROPPED_LOG) for path in worker_logs)


def duplicate_share(task: StepTask) -> float:
    """How likely the duplicator is to deliver ``task`` twice: always for slow jobs,
    whose steps outlast the stop a second worker must get."""
    return 1.0 if is_slow(task.params) else DUPLICATE_TASK_SHARE


@dataclass(frozen=True)
class Observed:
    """What a run left behind, gathered before its processes stop."""

    followed: list[Followed]
    raw_updates: dict[UUID, list[RawUpdate]]
    left_in_outbox: int
    left_in_events: int
    dead_letters: int
    elapsed_s: float


class FaultRun:
    """One run: its plan (all drawn from ``seed``), its processes, the chaos, the
    injector and the task duplicator."""

    def __init__(
        self,
        amqp_url: str,
        names: Names,
        database_url: str,
        store: Store,
        sql_engine: AsyncEngine,
        workdir: Path,
    ) -> None:
        self.jobs, self.rate = jobs_from_env(), rate_from_env()
        self.seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
        rng = random.Random(self.seed)
        self.plans = plan_jobs(rng, self.jobs, self.rate)
        self.faults = plan_faults(rng, self.jobs, window_s=self.jobs / self.rate)
        self._amqp_url, self._names, self._store = amqp_url, names, store
        self._sql_engine = sql_engine
        self.journal = workdir / "journal"
        workflows = write_workflow_file(DEMO_CONFIG, workdir / "workflows.json")
        env = orchestrator_env(amqp_url, database_url, names, workflows, SEGUE_LOG_LEVEL="warning")
        self.orchestrators = ProcessGroup(
            "orchestrator", segue_argv("serve"), env, ORCHESTRATORS, workdir / "logs"
        )
        journalled = {"PYTHONPATH": str(REPO), JOURNAL_ENV: str(self.journal)}
        self.workers = ProcessGroup(
            "worker",
            segue_argv("worker", "run", JOURNAL_WORKER),
            worker_env(amqp_url, names, WORKER_CONCURRENCY, **journalled),
            WORKERS,
            workdir / "logs",
        )
        self.chaos = Chaos(
            random.Random(rng.random()), self.orchestrators, self.workers, sql_engine, amqp_url
        )
        self._injector_rng = random.Random(rng.random())
        self._duplicator_rng = random.Random(rng.random())
        self.injected: list[Injected] = []
        self.duplicated = 0
        self.retries: Counter[str] = Counter()

    async def run(self) -> Observed:
        """Start everything, submit and follow every job under fire, settle, stop everything."""
        started = time.monotonic()
        self.chaos.timeline.started = time.time()
        await open_result_tap(
            self._amqp_url, self._names, tap_queue_name(self._names), UPDATE_BINDING
        )
        injector = await EventInjector.open(
            self._sql_engine, self._amqp_url, self._names, self._injector_rng
        )
        duplicator = await TaskDuplicator.open(
            self._amqp_url,
            self._names,
            task_tap_queue_name(self._names),
            [handler.queue for handler in demo_handlers()],
            self._duplicator_rng,
            duplicate_share,
            DUPLICATE_AFTER_S,
        )
        try:
            await self.orchestrators.start()
            await self.workers.start()
            await duplicator.start()
            followed = await self._drive(injector)
            return await self._observe(followed, started)
        finally:
            self.injected = injector.injected
            self.duplicated = len(duplicator.duplicated)
            await duplicator.close()
            await self.workers.stop()
            await self.orchestrators.stop()
            await injector.close()
            self.chaos.timeline.workers = dict(self.workers.lives)
            self.chaos.timeline.run_ended = time.time()

    async def _drive(self, injector: EventInjector) -> list[Followed]:
        """Submit and follow the jobs while the chaos and the injector do their work."""
        client = SegueClient(self._amqp_url, namespace=self._names.namespace, request_timeout_s=20)
        async with client:
            await wait_for_orchestrator(client)
            stop_injecting = asyncio.Event()
            injecting = asyncio.create_task(injector.run(stop_injecting, INJECT_INTERVAL_S))
            chaos = asyncio.create_task(self.chaos.run(self.faults, time.monotonic()))
            try:
                followers = await submit_all(client, self.plans, self.retries)
                followed = await asyncio.gather(*followers)
                await chaos
                return followed
            finally:
                stop_injecting.set()
                chaos.cancel()
                await asyncio.gather(injecting, chaos, return_exceptions=True)

    async def _observe(self, followed: list[Followed], started: float) -> Observed:
        """Wait for the dust to settle, then read the updates and count dead letters."""
        outbox, events = await wait_until_settled(self._store, self._amqp_url, self._names)
        raw = await drain_updates(self._amqp_url, tap_queue_name(self._names))
        dead = await queue_depth(self._amqp_url, self._names.dead_queue)
        return Observed(followed, raw, outbox, events, dead, time.monotonic() - started)

    async def audit(self, observed: Observed) -> tuple[Findings, str]:
        """Every problem found in the database, the journal and the updates, and the
        summary line."""
        stored = await load_stored_jobs(self._sql_engine)
        runs: list[Run] = read_runs(self.journal)
        timeline = self.chaos.timeline
        findings = Findings()
        audit_jobs(self.plans, stored, findings)
        job_ids = [plan.job_id for plan in self.plans]
        client_results = {
            job_id: item.result for job_id, item in zip(job_ids, observed.followed, strict=True)
        }
        raw_results = results_of(observed.raw_updates)
        redeliveries = audit_results(self.plans, client_results, raw_results, findings)
        audit_injections(self.injected, stored, findings)
        delivered = {
            job_id: item.updates for job_id, item in zip(job_ids, observed.followed, strict=True)
        }
        counts = {
            **audit_cancels(self.plans, stored, runs, timeline, findings),
            **audit_double_runs(runs, timeline, findings),
            **audit_losses(stored, runs, timeline, HEARTBEAT_S, findings),
            **audit_updates(self.plans, observed.raw_updates, delivered, findings),
        }
        statuses = Counter(stored[p.job_id].status for p in self.plans if p.job_id in stored)
        groups = (self.orchestrators, self.workers)
        extras = {
            "tasks_duplicated": self.duplicated,
            **cancel_kinds(self.plans),
            "tasks_dropped_unrun": tasks_dropped_unrun(self.workers.logs()),
            **counts,
            **crash_counts(stored.values()),
            "handler_runs": len(runs),
            "stale_of_lost_attempts": sum(item.detail == "lost" for item in self.injected),
            "raw_result_redeliveries": redeliveries,
            "unexpected_exits": sum(len(group.unexpected_exits) for group in groups),
            "client_retries": sum(self.retries.values()),
            "dead_letters": observed.dead_letters,
            "seed": self.seed,
            "elapsed": f"{observed.elapsed_s:.0f}s",
        }
        injected = Counter(item.kind for item in self.injected)
        return findings, summary_line(self.jobs, statuses, self.chaos, injected, findings, extras)


# --- the test ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(timeout_s(jobs_from_env(), rate_from_env()))
async def test_every_job_ends_once_as_planned_despite_crashes_restarts_and_stale_events(
    amqp_url: str,
    names: Names,
    database_url: str,
    store: Store,
    sql_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    run = FaultRun(amqp_url, names, database_url, store, sql_engine, tmp_path)
    print(f"\nfault-injection: seed={run.seed} jobs={run.jobs}", flush=True)
    observed = await run.run()
    findings, summary = await run.audit(observed)
    print(summary, flush=True)
    exits = process_report([run.orchestrators, run.workers])
    if exits:
        print(f"processes that exited on their own:\n{exits}", flush=True)

    dead = [dead_letter(m) for m in await drain_queue(amqp_url, names.dead_queue)]
    dead_report = "\n".join(f"dead letter from {d.source_queue}: {d.reason}" for d in dead)
    done = run.chaos.done
    assert done["orchestrators_killed"] >= 3
    assert done[FaultKind.ORCHESTRATOR_PAUSE] >= 2
    assert done[FaultKind.WORKER_KILL] >= 6
    assert done[FaultKind.RABBITMQ_RESTART] >= 1
    assert done[FaultKind.POSTGRES_RESTART] >= 1
    assert not findings, f"seed {run.seed}:\n{findings.report()}\n{dead_report}"
    assert observed.left_in_outbox == 0, f"{observed.left_in_outbox} outbox rows never published"
    assert observed.left_in_events == 0, f"{observed.left_in_events} worker events never handled"
    assert observed.dead_letters == 0, f"{observed.dead_letters} dead-lettered:\n{dead_report}"
