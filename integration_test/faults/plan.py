"""What a fault-injection run does, drawn from one seeded RNG: the jobs with
their expected outcomes, the faults and when they strike, and the workflow file.

Per 300 jobs: ~15% fail in a step on purpose; ~9% are cancelled, a third of
them after they started, a third right after their submission (most of these
at the end of a burst of 24 jobs submitted at once, so that their first task
waits in its queue when the cancel arrives) and a third before their
submission (the cancel is published first); ~4% are slow (4 s steps), so
that a second copy of one of their tasks finds the first still running.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from segue.protocol.messages import JobStatus

WORKFLOW = "energy_plan"
STEPS_WITH_SIMULATION = ("prepare", "optimise", "simulate", "report")
STEPS_WITHOUT_SIMULATION = ("prepare", "optimise", "report")
REGIONS = ("nl", "de", "be")
FAILING_SHARE = 0.15
CANCELLED_SHARE = 0.03
"""Of each kind of cancel (after the start, at the submission, before it)."""
MIN_CANCELLED = 3
SLOW_SHARE = 0.04
STEP_SECONDS = (0.05, 0.5)
CANCELLED_STEP_SECONDS = 8.0
"""Jobs the test cancels run long enough that the cancel always comes first."""
SLOW_STEP_SECONDS = 4.0
"""Long enough that a stop to a second worker running the same task comes first."""
SLOW_BEFORE = 0.75
"""Slow jobs are submitted in the first 75% of the run, so they do not make it longer."""
CANCEL_AFTER_S = (0.5, 3.0)
CANCEL_AHEAD_S = (0.0, 0.3)
"""How long a cancel is published before its submission."""
BURST_JOBS = 24
"""Jobs submitted at once, once per 300: more first tasks than the workers have slots."""
BURST_CANCELLED = 6
"""The last jobs of a burst are cancelled right after their submission."""
BURST_STEP_SECONDS = (0.5, 1.0)
DEMO_FAILURE_KIND = "DemoFailure"
CANCELLED_KIND = "cancelled"

HEARTBEAT_S = 3.0
JOBS_PER_ROUND = 300
MAX_CRASHES = 20
STEP_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 900.0


class CancelTiming(StrEnum):
    """When the test cancels a job."""

    AFTER_START = "after_start"
    """Once the orchestrator knows the job, ``cancel_after_s`` later: a step runs."""
    AT_SUBMIT = "at_submit"
    """Right after the submission: the first task is (usually) still queued."""
    BEFORE_SUBMIT = "before_submit"
    """``cancel_after_s`` before the submission: the cancel overtakes it."""


@dataclass(frozen=True)
class JobPlan:
    """One job of the run and what must become of it."""

    index: int
    job_id: UUID
    params: dict[str, Any]
    path: tuple[str, ...]
    expected: JobStatus
    cancel_after_s: float | None = None
    cancel: CancelTiming | None = None
    submit_at_s: float = 0.0
    """When it is submitted, after the first submission."""
    burst: bool = False

    @property
    def expected_error_kind(self) -> str | None:
        """The error kind the job must end with (None for a succeeded job)."""
        match self.expected:
            case JobStatus.FAILED:
                return DEMO_FAILURE_KIND
            case JobStatus.CANCELLED:
                return CANCELLED_KIND
            case _:
                return None


@dataclass(frozen=True)
class _Roles:
    """Which job indexes play which part."""

    cancels: dict[int, CancelTiming]
    failing: set[int]
    slow: set[int]
    burst: dict[int, int]
    """Index of each job of a burst -> index of the burst's first job."""


def _roles(rng: random.Random, count: int) -> _Roles:
    """Pick the bursts, then the cancelled, slow and failing jobs among the others."""
    burst = _bursts(rng, count)
    cancels = {
        index: CancelTiming.AT_SUBMIT
        for index, first in burst.items()
        if index >= first + BURST_JOBS - BURST_CANCELLED
    }
    others = [index for index in range(count) if index not in burst]
    rng.shuffle(others)  # from here on, any pick from it is a random choice
    per_kind = max(MIN_CANCELLED, round(count * CANCELLED_SHARE))
    wanted = (
        (CancelTiming.AFTER_START, per_kind),
        (CancelTiming.BEFORE_SUBMIT, per_kind),
        (CancelTiming.AT_SUBMIT, max(0, per_kind - len(cancels))),
    )
    for timing, how_many in wanted:
        for _ in range(how_many):
            cancels[others.pop()] = timing
    early = [index for index in others if index < SLOW_BEFORE * count]
    slow = set(early[: round(count * SLOW_SHARE)])
    failing = set([index for index in others if index not in slow][: round(count * FAILING_SHARE)])
    return _Roles(cancels, failing, slow, burst)


def _bursts(rng: random.Random, count: int) -> dict[int, int]:
    """One burst per 300 jobs (none in a round too short for it), away from the
    round's ends: each burst job's index -> the index of its burst's first job."""
    burst: dict[int, int] = {}
    for start in range(0, count, JOBS_PER_ROUND):
        size = min(JOBS_PER_ROUND, count - start)
        if size < 2 * BURST_JOBS:
            continue
        first = start + rng.randrange(size // 10, size - BURST_JOBS - size // 10)
        burst.update({first + offset: first for offset in range(BURST_JOBS)})
    return burst


def plan_jobs(rng: random.Random, count: int, rate: float) -> list[JobPlan]:
    """``count`` jobs submitted at ``rate`` per second (bursts at once): most succeed,
    ~15% fail in a step on purpose, ~9% get cancelled, ~4% are slow."""
    roles = _roles(rng, count)
    plans = []
    for index in range(count):
        simulate = rng.random() < 0.7 and index not in roles.slow
        path = STEPS_WITH_SIMULATION if simulate else STEPS_WITHOUT_SIMULATION
        params: dict[str, Any] = {
            "region": rng.choice(REGIONS),
            "horizon_years": rng.randint(1, 50),
            "simulate": simulate,
            "co2_price_eur": round(rng.uniform(0, 200), 2),
            "step_seconds": round(rng.uniform(*STEP_SECONDS), 3),
        }
        if index in roles.burst:
            params["step_seconds"] = round(rng.uniform(*BURST_STEP_SECONDS), 3)
        expected, cancel_after_s, cancel = JobStatus.SUCCEEDED, None, roles.cancels.get(index)
        if cancel is not None:
            params["step_seconds"] = CANCELLED_STEP_SECONDS
            expected = JobStatus.CANCELLED
            cancel_after_s = _cancel_delay(rng, cancel)
        elif index in roles.slow:
            params["step_seconds"] = SLOW_STEP_SECONDS
        elif index in roles.failing:
            params["fail_at"] = rng.choice(path)
            expected = JobStatus.FAILED
        job_id = UUID(int=rng.getrandbits(128), version=4)
        submit_at_s = roles.burst.get(index, index) / rate
        plans.append(
            JobPlan(
                index,
                job_id,
                params,
                path,
                expected,
                cancel_after_s,
                cancel,
                submit_at_s,
                burst=index in roles.burst,
            )
        )
    return plans


def _cancel_delay(rng: random.Random, cancel: CancelTiming) -> float:
    match cancel:
        case CancelTiming.AFTER_START:
            return round(rng.uniform(*CANCEL_AFTER_S), 2)
        case CancelTiming.BEFORE_SUBMIT:
            return round(rng.uniform(*CANCEL_AHEAD_S), 2)
        case CancelTiming.AT_SUBMIT:
            return 0.0


def is_slow(params: dict[str, Any]) -> bool:
    """Whether a job's steps are the slow ones (the task duplicator copies all of those)."""
    return float(params.get("step_seconds", 0.0)) == SLOW_STEP_SECONDS


class FaultKind(StrEnum):
    """A fault the chaos loop can cause."""

    ORCHESTRATOR_KILL = "orchestrator_kill"
    ORCHESTRATOR_PAUSE = "orchestrator_pause"
    """Every orchestrator frozen (SIGSTOP) for longer than a heartbeat timeout, then
    thawed: the workers' heartbeats pile up in the events queue meanwhile."""
    WORKER_KILL = "worker_kill"
    RABBITMQ_RESTART = "rabbitmq_restart"
    POSTGRES_RESTART = "postgres_restart"


FAULTS_PER_ROUND = {
    FaultKind.ORCHESTRATOR_KILL: 3,
    FaultKind.ORCHESTRATOR_PAUSE: 2,
    FaultKind.WORKER_KILL: 6,
    FaultKind.RABBITMQ_RESTART: 1,
    FaultKind.POSTGRES_RESTART: 1,
}


@dataclass(frozen=True)
class Fault:
    """A fault due ``at_s`` seconds after the first submission."""

    at_s: float
    kind: FaultKind


def plan_faults(rng: random.Random, jobs: int, window_s: float) -> list[Fault]:
    """The faults of a run, at random moments while jobs are being submitted.

    One round (3 orchestrator kills, 2 pauses of all orchestrators, 6 worker
    kills, one RabbitMQ and one PostgreSQL restart) per 300 jobs. Two pauses:
    what a pause may break shows only if the orchestrator's timers fire before
    it handles the backlog once it thaws, which is a race.
    """
    rounds = max(1, -(-jobs // JOBS_PER_ROUND))
    faults = [
        Fault(round(rng.uniform(0.05, 0.9) * window_s, 2), kind)
        for kind, count in FAULTS_PER_ROUND.items()
        for _ in range(count * rounds)
    ]
    return sorted(faults, key=lambda fault: fault.at_s)


def write_workflow_file(demo_config: Path, target: Path) -> Path:
    """The demo ``energy_plan`` workflow, tuned for fault injection, written to ``target``.

    A short ``heartbeat_s`` makes the orchestrator re-dispatch the steps of
    killed workers within seconds; a high ``max_crashes`` keeps the injected
    kills from ever quarantining a job; short timeouts keep a stuck step from
    hiding for an hour.
    """
    config = json.loads(demo_config.read_text())
    workflow = copy.deepcopy(next(w for w in config["workflows"] if w["name"] == WORKFLOW))
    workflow["timeout_s"] = JOB_TIMEOUT_S
    for step in workflow["steps"]:
        step.update(heartbeat_s=HEARTBEAT_S, max_crashes=MAX_CRASHES, timeout_s=STEP_TIMEOUT_S)
    config["workflows"] = [workflow]
    config.pop("$schema", None)
    target.write_text(json.dumps(config, indent=2))
    return target
