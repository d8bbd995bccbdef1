"""Workflows, message bodies and wiring shared by the tests of the orchestrator's shell."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from fakes import Clock, FakeJobStore, FakeSender
from segue.engine.events import JobSubmitted
from segue.engine.state import new_attempt_id
from segue.protocol.codec import encode
from segue.protocol.names import Names
from segue.service.applier import Applier, Change
from segue.service.failures import is_transient
from segue.workflows.loader import Catalog, LoadedWorkflow
from segue.workflows.model import Workflow

NAMES = Names("test")
JOB_TIMEOUT_S = 30.0


def one_step_workflow(name: str = "quick_check", **fields: Any) -> Workflow:
    """One step on queue ``q-check``, with a ``horizon`` parameter (integer >= 1, default 2)."""
    horizon = {"name": "horizon", "type": "integer", "minimum": 1, "default": 2}
    return Workflow.model_validate(
        {
            "name": name,
            "parameters": [horizon],
            "steps": [{"name": "check", "queue": "q-check"}],
            **fields,
        }
    )


def catalog(*workflows: Workflow) -> Catalog:
    """A catalog of these workflows (default: ``quick_check`` and a timed ``slow_plan``)."""
    chosen = workflows or (
        one_step_workflow(),
        one_step_workflow("slow_plan", timeout_s=JOB_TIMEOUT_S),
    )
    return Catalog(LoadedWorkflow.of(workflow) for workflow in chosen)


def submitted(loaded: LoadedWorkflow, job_id: UUID, **params: Any) -> Change:
    """The change a valid submission of ``loaded`` makes."""
    event = JobSubmitted(
        job_id=job_id,
        workflow=loaded.workflow,
        workflow_hash=loaded.content_hash,
        params=params,
        workflow_name=loaded.workflow.name,
    )
    return Change(job_id, event)


def first_attempt(job_id: UUID) -> UUID:
    """The id of a job's first attempt (ids are deterministic)."""
    return new_attempt_id(job_id, 1)


def applier(
    store: FakeJobStore, sender: FakeSender | None = None, clock: Clock | None = None
) -> Applier:
    """The real applier on fakes."""
    return Applier(store, sender or FakeSender(), NAMES, clock or Clock(), is_transient)


def body(message: BaseModel) -> bytes:
    """A message model as a wire body."""
    return encode(message)


def raw(**fields: Any) -> bytes:
    """Any JSON object as a wire body (for invalid messages)."""
    return json.dumps(fields).encode()
