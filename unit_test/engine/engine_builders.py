"""Workflows, clocks and event helpers shared by the engine tests (no services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from segue.engine.effects import Decision, DispatchStep, Effect, Record, StopAttempt
from segue.engine.events import Event, JobSubmitted
from segue.engine.machine import decide
from segue.engine.state import Attempt, Job
from segue.workflows.model import Workflow

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
JOB_ID = UUID("00000000-0000-4000-8000-000000000001")


def at(seconds: float) -> datetime:
    """The moment ``seconds`` after the tests' epoch ``T0``."""
    return T0 + timedelta(seconds=seconds)


def step(name: str, **fields: Any) -> dict[str, Any]:
    """A step definition serving queue ``q-<name>``; ``fields`` override defaults."""
    return {"name": name, "queue": f"q-{name}", **fields}


def workflow(*steps: dict[str, Any], **fields: Any) -> Workflow:
    """A validated workflow named ``wf`` with these steps."""
    return Workflow.model_validate({"name": "wf", "steps": list(steps), **fields})


def pipeline() -> Workflow:
    """Three steps with a branch: ``prepare`` skips ``simulate`` when ``mode`` is fast."""
    branch = {
        "branches": [
            {"when": {"var": "params.mode", "op": "==", "value": "fast"}, "goto": "report"}
        ],
        "default": "simulate",
    }
    mode = {
        "name": "mode",
        "type": "string",
        "default": "full",
        "enum": [{"value": "full"}, {"value": "fast"}],
    }
    return workflow(
        step("prepare", next=branch),
        step("simulate", next="report"),
        step("report"),
        parameters=[mode, {"name": "horizon", "type": "integer", "minimum": 1}],
    )


def submit(
    wf: Workflow, params: dict[str, Any] | None = None, now: datetime = T0, **fields: Any
) -> Decision:
    """Submit a job of ``wf`` with ``params``; ``fields`` set more of the submission
    (``secret``, ``owner``, ``cancelled``)."""
    event = JobSubmitted(
        job_id=JOB_ID, workflow=wf, workflow_hash="h", params=params or {}, **fields
    )
    return decide(None, event, now)


def current(job: Job | None) -> Attempt:
    """The job's newest attempt (fails the test when there is none)."""
    assert job is not None
    attempt = job.current_attempt
    assert attempt is not None
    return attempt


def types(items: tuple[Effect, ...] | tuple[Record, ...]) -> list[str]:
    """The class names of effects, or the types of records, in order."""
    return [item.type if isinstance(item, Record) else type(item).__name__ for item in items]


@dataclass
class Run:
    """A job driven through events, keeping every decision for later checks."""

    job: Job | None
    decisions: list[Decision] = field(default_factory=list)

    @classmethod
    def submitted(cls, wf: Workflow, params: dict[str, Any] | None = None, **fields: Any) -> Run:
        """A run whose job was just submitted at ``T0`` (``fields``: see :func:`submit`)."""
        decision = submit(wf, params, **fields)
        return cls(job=decision.job, decisions=[decision])

    def apply(self, event: Event, seconds: float) -> Decision:
        """Apply ``event`` at ``at(seconds)`` and keep the new job."""
        decision = decide(self.job, event, at(seconds))
        self.decisions.append(decision)
        if decision.job is not None:
            self.job = decision.job
        return decision

    @property
    def live(self) -> Job:
        """The job (fails the test when there is none)."""
        assert self.job is not None
        return self.job

    @property
    def attempt_id(self) -> UUID:
        """The id of the job's current attempt."""
        return current(self.job).attempt_id


def tasks(*decisions: Decision) -> list[DispatchStep]:
    """The tasks the decisions dispatched, in order."""
    return [e for d in decisions for e in d.effects if isinstance(e, DispatchStep)]


def stops(decision: Decision) -> list[StopAttempt]:
    """The ``StopAttempt`` effects of a decision."""
    return [e for e in decision.effects if isinstance(e, StopAttempt)]


def live_ids(job: Job | None) -> list[UUID]:
    """Ids of the job's live attempts, oldest first."""
    assert job is not None
    return [attempt.attempt_id for attempt in job.live_attempts]
