"""Drive the unmodified OMOTES SDK client (omotes-sdk-python 4.x) and report what it hears.

Run ONLY with the OMOTES venv (``.venv-omotes/bin/python``, made by
``bash ci/setup.sh``): it imports ``omotes_sdk``, which Segue never does (a
GPL-licensed test peer, with an aio-pika pin of its own). It is not a test
module (pytest does not collect it) and mypy skips it (pyproject.toml).

Usage: ``python omotes_client_driver.py '<plan as JSON>'``. The plan::

    {
      "rabbitmq": {"host": ..., "port": ..., "username": ..., "password": ...,
                   "virtual_host": ...},
      "client_id": "test-client-1",
      "jobs": [{"workflow": "name", "params": {...}, "esdl": "<esdl/>",
                "timeout_s": 2.5, "priority": "HIGH", "reference": "ref",
                "delete_on": "RUNNING" | "progress" | "result" | null}],
      "reconnect": [{"job_id": "<uuid>", "workflow": "name"}],
      "wait": true,          # wait for every result (false: submit and stop)
      "wait_s": 60,
      "esdl_digest_only": false  # results show only the output ESDL's sha256 and size
    }

Parameter values: JSON values as they are, except ``{"$datetime": "<ISO 8601>"}``
(a ``datetime``) and ``{"$timedelta": <seconds>}`` (a ``timedelta``), which the
SDK turns into what it sends on the wire.

Prints one JSON object per line on stdout: ``workflows`` (as the client
parsed ``AvailableWorkflows``), ``submitted``, ``status``, ``progress``,
``result`` (``output_esdl``, and its ``output_esdl_sha256`` and
``output_esdl_bytes`` of UTF-8), ``deleted``, ``reconnected``, ``error`` and
finally ``done`` (with ``complete``: every result arrived in time). A job to
delete on ``result`` is deleted (``delete_job``) before its result counts as
arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from omotes_sdk.config import RabbitMQConfig
from omotes_sdk.job import Job
from omotes_sdk.omotes_interface import OmotesInterface
from omotes_sdk.workflow_type import (
    DateTimeParameter,
    DurationParameter,
    FloatParameter,
    IntegerParameter,
    StringParameter,
    WorkflowParameter,
    WorkflowType,
)
from omotes_sdk_protocol.job_pb2 import JobProgressUpdate, JobResult, JobStatusUpdate, JobSubmission

_print_lock = threading.Lock()


def emit(event: str, **data: Any) -> None:
    """One JSON line on stdout (callbacks run on the SDK's threads)."""
    with _print_lock:
        sys.stdout.write(json.dumps({"event": event, **data}, default=str) + "\n")
        sys.stdout.flush()


def typed(value: Any) -> Any:
    """A parameter value of the plan as the Python value the SDK expects."""
    if isinstance(value, dict) and "$datetime" in value:
        return datetime.fromisoformat(value["$datetime"])
    if isinstance(value, dict) and "$timedelta" in value:
        return timedelta(seconds=value["$timedelta"])
    return value


def describe_parameter(parameter: WorkflowParameter) -> dict[str, Any]:
    """A parameter as the client parsed it."""
    described: dict[str, Any] = {
        "key_name": parameter.key_name,
        "type_name": parameter.type_name,
        "title": parameter.title,
        "description": parameter.description,
        "constraints": [
            {"other_key_name": c.other_key_name, "relation": int(c.relation)}
            for c in parameter.constraints
        ],
    }
    default = getattr(parameter, "default", None)
    described["default"] = default.isoformat() if isinstance(default, datetime) else default
    if isinstance(parameter, DurationParameter):
        for key in ("default", "minimum", "maximum"):
            value = getattr(parameter, key)
            described[key] = None if value is None else value.total_seconds()
    if isinstance(parameter, IntegerParameter | FloatParameter):
        described["minimum"] = parameter.minimum
        described["maximum"] = parameter.maximum
    if isinstance(parameter, StringParameter):
        described["enum_options"] = [
            {"key_name": o.key_name, "display_name": o.display_name}
            for o in parameter.enum_options or []
        ]
    if isinstance(parameter, DateTimeParameter) and isinstance(default, datetime):
        described["default_is_naive"] = default.tzinfo is None
    return described


def describe_workflow(workflow: WorkflowType) -> dict[str, Any]:
    """A workflow type as the client parsed it."""
    return {
        "name": workflow.workflow_type_name,
        "description": workflow.workflow_type_description_name,
        "parameters": [describe_parameter(p) for p in workflow.workflow_parameters or []],
    }


class Driver:
    """One OMOTES client running one plan."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.omotes = OmotesInterface(
            RabbitMQConfig(**plan["rabbitmq"]),
            client_id=plan["client_id"],
            timeout_on_initial_workflow_definitions=timedelta(seconds=30),
        )
        self.expected: set[str] = set()
        self.results: set[str] = set()
        self.delete_on: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.lock = threading.Lock()
        self.all_done = threading.Event()

    def on_result(self, job: Job, result: JobResult) -> None:
        output_esdl = result.output_esdl if result.HasField("output_esdl") else None
        data = None if output_esdl is None else output_esdl.encode()
        emit(
            "result",
            job_id=str(job.id),
            result_type=JobResult.ResultType.Name(result.result_type),
            output_esdl=None if self.plan.get("esdl_digest_only") else output_esdl,
            output_esdl_sha256=None if data is None else hashlib.sha256(data).hexdigest(),
            output_esdl_bytes=None if data is None else len(data),
            logs=result.logs,
            esdl_messages=[
                {
                    "technical_message": m.technical_message,
                    "severity": m.Severity.Name(m.severity),
                    "esdl_object_id": m.esdl_object_id if m.HasField("esdl_object_id") else None,
                }
                for m in result.esdl_messages
            ],
        )
        self._maybe_delete(job, "result")
        with self.lock:
            self.results.add(str(job.id))
            if self.expected <= self.results:
                self.all_done.set()

    def on_status(self, job: Job, status: JobStatusUpdate) -> None:
        name = JobStatusUpdate.JobStatus.Name(status.status)
        emit("status", job_id=str(job.id), status=name)
        self._maybe_delete(job, "RUNNING" if name == "RUNNING" else None)

    def on_progress(self, job: Job, progress: JobProgressUpdate) -> None:
        emit("progress", job_id=str(job.id), progress=progress.progress, message=progress.message)
        self._maybe_delete(job, "progress")

    def _maybe_delete(self, job: Job, trigger: str | None) -> None:
        job_id = str(job.id)
        with self.lock:
            if trigger is None or self.delete_on.get(job_id) != trigger or job_id in self.deleted:
                return
            self.deleted.add(job_id)
        self.omotes.delete_job(job)
        emit("deleted", job_id=job_id)

    def run(self) -> bool:
        self.omotes.start()
        manager = self.omotes.get_workflow_type_manager()
        emit("workflows", workflows=[describe_workflow(w) for w in manager.get_all_workflows()])
        for spec in self.plan.get("jobs", []):
            self._submit(manager, spec)
        for spec in self.plan.get("reconnect", []):
            self._reconnect(manager, spec)
        if not self.plan.get("wait", True):
            return True
        with self.lock:
            if self.expected <= self.results:
                self.all_done.set()
        return self.all_done.wait(self.plan.get("wait_s", 60))

    def _submit(self, manager: Any, spec: dict[str, Any]) -> None:
        workflow = manager.get_workflow_by_name(spec["workflow"])
        priority = JobSubmission.JobPriority.Value(spec.get("priority", "MEDIUM"))
        timeout = spec.get("timeout_s")
        try:
            job = self.omotes.submit_job(
                esdl=spec.get("esdl", "<esdl/>"),
                params_dict={k: typed(v) for k, v in spec.get("params", {}).items()},
                workflow_type=workflow or WorkflowType(spec["workflow"], ""),
                job_timeout=None if timeout is None else timedelta(seconds=timeout),
                callback_on_finished=self.on_result,
                callback_on_progress_update=self.on_progress,
                callback_on_status_update=self.on_status,
                auto_disconnect_on_result=True,
                job_reference=spec.get("reference"),
                job_priority=priority,
            )
        except Exception as exc:
            emit("error", workflow=spec["workflow"], error=f"{type(exc).__name__}: {exc}")
            return
        with self.lock:
            self.expected.add(str(job.id))
            if spec.get("delete_on"):
                self.delete_on[str(job.id)] = spec["delete_on"]
        emit("submitted", job_id=str(job.id), workflow=spec["workflow"])

    def _reconnect(self, manager: Any, spec: dict[str, Any]) -> None:
        workflow = manager.get_workflow_by_name(spec["workflow"])
        job = Job(id=uuid.UUID(spec["job_id"]), workflow_type=workflow)
        with self.lock:
            self.expected.add(str(job.id))
        try:
            self.omotes.connect_to_submitted_job(
                job,
                callback_on_finished=self.on_result,
                callback_on_progress_update=None,
                callback_on_status_update=None,
                auto_disconnect_on_result=True,
                reconnect=True,
            )
        except Exception as exc:
            emit("error", job_id=str(job.id), error=f"{type(exc).__name__}: {exc}")
            with self.lock:
                self.expected.discard(str(job.id))
            return
        emit("reconnected", job_id=str(job.id))


def main() -> None:
    plan = json.loads(sys.argv[1])
    driver = Driver(plan)
    started = time.monotonic()
    complete = False
    try:
        complete = driver.run()
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
    finally:
        emit("done", complete=complete, seconds=round(time.monotonic() - started, 3))
        try:
            driver.omotes.stop()
        finally:
            # The SDK's broker thread may outlive stop(); the report is complete.
            os._exit(0)


if __name__ == "__main__":
    main()
