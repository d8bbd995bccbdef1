"""What the ``segue`` command shows: job and workflow views, live progress, and
parsing of ``-p key=value`` parameters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from segue.cli_progress import describe_queue, progress_chart
from segue.cli_queue import QueueWatch
from segue.client import JobHandle, JobRejectedError, SegueClient
from segue.protocol.messages import (
    Command,
    Event,
    JobFinished,
    JobProgressed,
    JobStatus,
    JobStatusChanged,
    JobView,
    QueueEstimate,
    Reply,
    StepTask,
    Update,
    WorkflowInfo,
)
from segue.settings import Settings
from segue.workflows.loader import load_workflows

STATUS_STYLE = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
    JobStatus.TIMED_OUT: "red",
}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``: values are JSON when they parse."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter {pair!r} is not key=value")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def workflow_infos_from_file(path: Path) -> list[WorkflowInfo]:
    """The workflows of a local file, as the orchestrator would list them."""
    return [loaded.info() for loaded in load_workflows(path)]


def print_workflows(console: Console, infos: list[WorkflowInfo]) -> None:
    """A table of workflows with their steps and parameters."""
    table = Table(title="workflows")
    for column in ("name", "version", "steps", "parameters", "description"):
        table.add_column(column)
    for info in infos:
        properties = info.parameters_schema.get("properties", {})
        params = ", ".join(
            f"{name}: {spec.get('type', '?')}"
            + (f" = {json.dumps(spec['default'])}" if "default" in spec else "")
            for name, spec in properties.items()
        )
        table.add_row(info.name, info.version, " → ".join(info.steps), params, info.description)
    console.print(table)


def print_job(console: Console, view: JobView) -> None:
    """A job's summary, attempts and history."""
    style = STATUS_STYLE[view.status]
    console.print(f"[bold]job[/] {view.job_id}  [{style}]{view.status}[/]")
    console.print(
        f"workflow {view.workflow} v{view.workflow_version} ({view.workflow_hash[:12]})"
        f"  priority {view.priority}  reference {view.reference or '-'}"
    )
    console.print(
        f"created {view.created_at:%Y-%m-%d %H:%M:%S%z}  updated {view.updated_at:%H:%M:%S}"
    )
    console.print(f"params {json.dumps(view.params)}", highlight=False)
    if view.error is not None:
        where = f" in step {view.error.step}" if view.error.step else ""
        console.print(
            f"[red]error{where}: {view.error.kind}: {view.error.message}[/]", highlight=False
        )
    if view.outputs:
        console.print(f"outputs {json.dumps(view.outputs)}", highlight=False)
    if view.queue is not None:
        console.print(describe_queue(view.queue), highlight=False)
    attempts = Table(title="attempts")
    columns = ("run", "step", "item", "iter", "#", "status", "worker")
    for column in (*columns, "started", "finished", "progress", "error"):
        attempts.add_column(column)
    for attempt in view.attempts:
        attempts.add_row(
            str(attempt.run),
            attempt.step,
            "" if attempt.item_index is None else str(attempt.item_index),
            str(attempt.iteration),
            str(attempt.number),
            str(attempt.status),
            attempt.worker_id or "",
            f"{attempt.started_at:%H:%M:%S}" if attempt.started_at else "",
            f"{attempt.finished_at:%H:%M:%S}" if attempt.finished_at else "",
            f"{attempt.progress:.0%}" if attempt.progress is not None else "",
            f"{attempt.error.kind}: {attempt.error.message}" if attempt.error else "",
        )
    console.print(attempts)
    chart = progress_chart(view, datetime.now(UTC))
    if chart is not None:
        console.print(chart)
    history = Table(title="history")
    for column in ("seq", "at", "event", "data"):
        history.add_column(column)
    for entry in view.history:
        history.add_row(
            str(entry.seq), f"{entry.at:%H:%M:%S.%f}"[:-3], entry.type, json.dumps(entry.data)
        )
    console.print(history)


async def submit_and_follow(
    settings: Settings,
    workflow: str,
    params: dict[str, Any],
    job_id: UUID | None,
    priority: int,
    reference: str | None,
    *,
    wait: bool,
    as_json: bool,
) -> int:
    """Submit a job and report it; returns the process exit code."""
    console = Console(stderr=as_json)
    async with SegueClient(settings.amqp_url, namespace=settings.namespace) as client:
        job = await client.submit(
            workflow, params, job_id=job_id, priority=priority, reference=reference
        )
        try:
            await job.accepted()
        except JobRejectedError as exc:
            console.print(f"[bold red]rejected:[/] {exc}", highlight=False)
            return 1
        console.print(f"job {job.job_id} accepted")
        if not wait:
            if as_json:
                print(json.dumps({"job_id": str(job.job_id)}))
            return 0
        result = await _follow(console, job)
    _print_result(console, result, as_json)
    return 0 if result.status is JobStatus.SUCCEEDED else 1


async def _follow(console: Console, job: JobHandle) -> JobFinished:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bars: dict[str, TaskID] = {}

        def bar(step: str) -> TaskID:
            if step not in bars:
                bars[step] = progress.add_task(step, total=1.0, message="")
            return bars[step]

        def show(place: QueueEstimate) -> None:
            """While a step waits for a worker, its bar says where it stands in its queue."""
            progress.update(bar(place.step), message=describe_queue(place))

        async with QueueWatch(job, show) as watch:
            async for update in job.updates():
                if isinstance(update, JobStatusChanged) and update.step:
                    bar(update.step)
                    watch.step_entered()
                elif isinstance(update, JobProgressed):
                    watch.step_progressed()
                    progress.update(
                        bar(update.step), completed=update.fraction, message=update.message
                    )
                elif isinstance(update, JobFinished):
                    for done in bars.values():
                        if update.status is JobStatus.SUCCEEDED:
                            progress.update(done, completed=1.0)
                    return update
    return await job.result()


def _print_result(console: Console, result: JobFinished, as_json: bool) -> None:
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    style = STATUS_STYLE[result.status]
    console.print(f"job {result.job_id} [{style}]{result.status}[/]")
    if result.error is not None:
        console.print(f"[red]{result.error.kind}: {result.error.message}[/]", highlight=False)
    if result.output:
        console.print(json.dumps(result.output, indent=2), highlight=False)


def protocol_schemas() -> dict[str, Any]:
    """JSON Schemas of every message family."""
    families: dict[str, Any] = {
        "command": Command,
        "event": Event,
        "task": StepTask,
        "update": Update,
        "reply": Reply,
    }
    return {name: TypeAdapter(kind).json_schema() for name, kind in families.items()}
