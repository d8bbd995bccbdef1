"""What a fault-injection run does, drawn from one seeded RNG: the jobs with
their expected outcomes, the faults and when they strike, and the workflow file.
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
MIN_CANCELLED = 3
STEP_SECONDS = (0.05, 0.5)
CANCELLED_STEP_SECONDS = 8.0
"""Jobs the test cancels run long enough that the cancel always comes first."""
CANCEL_AFTER_S = (0.5, 3.0)
DEMO_FAILURE_KIND = "DemoFailure"
CANCELLED_KIND = "cancelled"

HEARTBEAT_S = 3.0
MAX_CRASHES = 20
STEP_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class JobPlan:
    """One job of the run and what must become of it."""

    index: int
    job_id: UUID
    params: dict[str, Any]
    path: tuple[str, ...]
    expected: JobStatus
    cancel_after_s: float | None = None

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


def plan_jobs(rng: random.Random, count: int) -> list[JobPlan]:
    """``count`` jobs: most succeed, ~15% fail in a step on purpose, ~3% get cancelled."""
    indexes = list(range(count))
    rng.shuffle(indexes)
    cancelled = set(indexes[: max(MIN_CANCELLED, round(count * CANCELLED_SHARE))])
    failing = set(indexes[len(cancelled) : len(cancelled) + round(count * FAILING_SHARE)])
    plans = []
    for index in range(count):
        simulate = rng.random() < 0.7
        path = STEPS_WITH_SIMULATION if simulate else STEPS_WITHOUT_SIMULATION
        params: dict[str, Any] = {
            "region": rng.choice(REGIONS),
            "horizon_years": rng.randint(1, 50),
            "simulate": simulate,
            "co2_price_eur": round(rng.uniform(0, 200), 2),
            "step_seconds": round(rng.uniform(*STEP_SECONDS), 3),
        }
        expected, cancel_after_s = JobStatus.SUCCEEDED, None
        if index in cancelled:
            params["step_seconds"] = CANCELLED_STEP_SECONDS
            expected, cancel_after_s = JobStatus.CANCELLED, round(rng.uniform(*CANCEL_AFTER_S), 2)
        elif index in failing:
            params["fail_at"] = rng.choice(path)
            expected = JobStatus.FAILED
        job_id = UUID(int=rng.getrandbits(128), version=4)
        plans.append(JobPlan(index, job_id, params, path, expected, cancel_after_s))
    return plans


class FaultKind(StrEnum):
    """A fault the chaos loop can cause."""

    ORCHESTRATOR_KILL = "orchestrator_kill"
    WORKER_KILL = "worker_kill"
    RABBITMQ_RESTART = "rabbitmq_restart"
    POSTGRES_RESTART = "postgres_restart"


FAULTS_PER_ROUND = {
    FaultKind.ORCHESTRATOR_KILL: 3,
    FaultKind.WORKER_KILL: 6,
    FaultKind.RABBITMQ_RESTART: 1,
    FaultKind.POSTGRES_RESTART: 1,
}
JOBS_PER_ROUND = 300


@dataclass(frozen=True)
class Fault:
    """A fault due ``at_s`` seconds after the first submission."""

    at_s: float
    kind: FaultKind


def plan_faults(rng: random.Random, jobs: int, window_s: float) -> list[Fault]:
    """The faults of a run, at random moments while jobs are being submitted.

    One round (3 orchestrator kills, 6 worker kills, one RabbitMQ and one
    PostgreSQL restart) per 300 jobs.
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
