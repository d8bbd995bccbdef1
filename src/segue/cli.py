"""The ``segue`` command: run the orchestrator and workers, manage the database,
check workflow files, and submit, follow and cancel jobs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console

from segue.cli_schedules import schedules_app
from segue.cli_support import fail, run, settings_or_exit
from segue.errors import SegueError
from segue.logs import configure_logging

if TYPE_CHECKING:
    from segue.client import SegueClient

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
worker_app = typer.Typer(no_args_is_help=True, help="Run workers written with the SDK.")
workflows_app = typer.Typer(no_args_is_help=True, help="Inspect and check workflow definitions.")
jobs_app = typer.Typer(no_args_is_help=True, help="Inspect and control jobs.")
protocol_app = typer.Typer(no_args_is_help=True, help="The message protocol.")
outbox_app = typer.Typer(
    no_args_is_help=True, help="Messages the broker kept refusing (quarantined outbox rows)."
)
app.add_typer(db_app, name="db")
app.add_typer(worker_app, name="worker")
app.add_typer(workflows_app, name="workflows")
app.add_typer(jobs_app, name="jobs")
app.add_typer(protocol_app, name="protocol")
app.add_typer(outbox_app, name="outbox")
app.add_typer(schedules_app, name="schedules")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def main() -> None:
    """Entry point of the ``segue`` console script."""
    app()


# --- service ---------------------------------------------------------------------------


@app.command()
def serve() -> None:
    """Run the orchestrator until SIGTERM/SIGINT; SIGHUP reloads the workflow file."""
    from segue.service.app import run_service

    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)

    async def serve_until_signalled() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        await run_service(settings, stop, reload=reload)

    run(serve_until_signalled())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if it is missing and apply all migrations."""
    from segue.store.migrate import upgrade_database

    settings = settings_or_exit()
    try:
        upgrade_database(settings.database_url)
    except SegueError as exc:
        fail(str(exc))
    Console().print("database is up to date")


@outbox_app.command("list")
def outbox_list() -> None:
    """Show quarantined outbox rows: where they were going and why the broker refused them."""
    from rich.table import Table

    from segue.store.repository import Store

    async def quarantined() -> list[Any]:
        store = await Store.connect(settings_or_exit().database_url, pool_size=1)
        try:
            return list(await store.quarantined_outbox())
        finally:
            await store.close()

    rows = run(quarantined())
    if not rows:
        Console().print("no quarantined outbox rows")
        return
    table = Table("id", "exchange", "routing key", "failures", "quarantined at", "reason")
    for row in rows:
        table.add_row(
            str(row.id),
            row.exchange,
            row.routing_key,
            str(row.failures),
            row.quarantined_at.isoformat(timespec="seconds"),
            row.last_error or "",
        )
    Console().print(table)


@outbox_app.command("release")
def outbox_release(
    row_ids: Annotated[
        list[int] | None, typer.Argument(help="rows to release (default: every quarantined row)")
    ] = None,
) -> None:
    """Give quarantined rows back to the relay (after fixing what the broker refused)."""
    from segue.store.repository import Store

    async def release() -> int:
        store = await Store.connect(settings_or_exit().database_url, pool_size=1)
        try:
            return await store.release_outbox(row_ids or None)
        finally:
            await store.close()

    Console().print(f"released {run(release())} outbox rows")


@worker_app.command("run")
def worker_run(
    target: Annotated[str, typer.Argument(help="MODULE:ATTR, a Worker or a factory of one")],
) -> None:
    """Run a worker until SIGTERM/SIGINT (logging: SEGUE_LOG_LEVEL, SEGUE_LOG_FORMAT)."""
    from segue.worker.runner import run_worker

    # Only these two of the orchestrator's settings apply: a worker needs no database.
    configure_logging(
        os.environ.get("SEGUE_LOG_LEVEL", "info"), os.environ.get("SEGUE_LOG_FORMAT", "auto")
    )
    try:
        run_worker(target)
    except SegueError as exc:
        fail(str(exc))


# --- workflows -------------------------------------------------------------------------


@workflows_app.command("check")
def workflows_check(
    path: Annotated[Path, typer.Argument(help="A workflow_config.json to lint")],
) -> None:
    """Exit 0 if the file is valid, else 1 with each problem (JSON path: reason)."""
    from segue.workflows.loader import WorkflowConfigError, load_workflows

    try:
        catalog = load_workflows(path)
    except WorkflowConfigError as exc:
        fail(str(exc))
    Console().print(f"{path}: ok ({len(catalog)} workflows: {', '.join(catalog.names)})")


class ShowFormat(StrEnum):
    """How ``segue workflows show`` draws a workflow."""

    OUTLINE = "outline"
    MERMAID = "mermaid"


@workflows_app.command("show")
def workflows_show(
    name: Annotated[str, typer.Argument(help="Workflow name")],
    file: Annotated[
        Path | None, typer.Option(help="Read this file instead of SEGUE_WORKFLOW_CONFIG")
    ] = None,
    fmt: Annotated[
        ShowFormat, typer.Option("--format", help="A text outline or a Mermaid flowchart")
    ] = ShowFormat.OUTLINE,
) -> None:
    """Show a workflow: parameters and steps as text, or a Mermaid flowchart."""
    from segue.workflows.diagram import to_mermaid, to_outline
    from segue.workflows.loader import WorkflowConfigError, load_workflows

    path = file if file is not None else settings_or_exit().workflow_config
    try:
        catalog = load_workflows(path)
    except WorkflowConfigError as exc:
        fail(str(exc))
    loaded = catalog.get(name)
    if loaded is None:
        fail(f"no workflow {name!r} in {path} (workflows: {', '.join(catalog.names)})")
    draw = to_mermaid if fmt is ShowFormat.MERMAID else to_outline
    print(draw(loaded.workflow), end="")


@workflows_app.command("list")
def workflows_list(
    as_json: JsonFlag = False,
    file: Annotated[
        Path | None, typer.Option(help="Read this file instead of asking the orchestrator")
    ] = None,
) -> None:
    """List the workflows the orchestrator runs, with their parameters."""
    from segue.cli_views import print_workflows, workflow_infos_from_file

    if file is not None:
        infos = workflow_infos_from_file(file)
    else:
        infos = run(_with_client(lambda client: client.workflows()))
    if as_json:
        print(json.dumps([info.model_dump(mode="json") for info in infos], indent=2))
    else:
        print_workflows(Console(), infos)


# --- jobs ------------------------------------------------------------------------------


@app.command()
def submit(
    workflow: Annotated[str, typer.Argument(help="Workflow name")],
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="key=value (value parsed as JSON if it can be)"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job live until it ends")] = False,
    job_id: Annotated[UUID | None, typer.Option(help="Choose the job id (idempotent)")] = None,
    priority: Annotated[int, typer.Option(min=0, max=9)] = 5,
    reference: Annotated[str | None, typer.Option(help="Your own reference")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job; with --wait, show live progress and exit 0 only if it succeeded."""
    from segue.cli_views import parse_params, submit_and_follow

    try:
        params = parse_params(param or [])
    except ValueError as exc:
        fail(str(exc), code=2)
    settings = settings_or_exit()
    configure_logging("warning", settings.log_format)
    code = run(
        submit_and_follow(
            settings, workflow, params, job_id, priority, reference, wait=wait, as_json=as_json
        )
    )
    raise typer.Exit(code)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="queued, running, succeeded, failed, cancelled or timed_out (repeatable)"
        ),
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Workflow name")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after: ISO 8601 or ago (30m, 2h, 3d)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Created before: ISO 8601 or ago (30m, 2h, 3d)")
    ] = None,
    step: Annotated[str | None, typer.Option(help="Current step (or the step it ended in)")] = None,
    error: Annotated[
        str | None, typer.Option(help="Text in the job's error (kind: message), any case")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="The RabbitMQ user that submitted it")] = None,
    after: Annotated[
        str | None, typer.Option(help="Continue after the page that printed this cursor")
    ] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (at most 1000)")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List jobs newest first, a page at a time, straight from the database."""
    from segue.cli_listing import page_json, print_page
    from segue.store.list_filters import FilterError, FilterText, parse_filter
    from segue.store.listing import JobFilter, JobPage
    from segue.store.repository import Store

    typed = FilterText(status or (), workflow, since, until, step, error, owner, after, limit)
    try:
        job_filter = parse_filter(typed, datetime.now(UTC))
    except FilterError as exc:
        raise typer.BadParameter(exc.reason, param_hint=f"'--{exc.field}'") from exc

    async def page(chosen: JobFilter) -> JobPage:
        store = await Store.connect(settings_or_exit().database_url, pool_size=1)
        try:
            return await store.jobs_page(chosen)
        finally:
            await store.close()

    listed = run(page(job_filter))
    if as_json:
        print(json.dumps(page_json(listed), indent=2))
    else:
        print_page(Console(), listed)


@jobs_app.command("show")
def jobs_show(job_id: UUID, as_json: JsonFlag = False) -> None:
    """Show a job's state, attempts and history."""
    from segue.cli_views import print_job

    view = run(_with_client(lambda client: client.get(job_id, include_queue=True)))
    if view is None:
        fail(f"no job {job_id}")
    if as_json:
        print(view.model_dump_json(indent=2))
    else:
        print_job(Console(), view)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: UUID,
    reason: Annotated[
        str, typer.Option(help="Recorded in the job's history")
    ] = "cancelled from the CLI",
) -> None:
    """Ask the orchestrator to cancel a job."""
    run(_with_client(lambda client: client.cancel(job_id, reason=reason)))
    Console().print(f"cancel requested for {job_id}")


@jobs_app.command("retry")
def jobs_retry(
    job_id: UUID,
    reason: Annotated[
        str, typer.Option(help="Recorded in the job's history")
    ] = "retried from the CLI",
) -> None:
    """Run a failed or timed-out job again from the step that failed."""
    view = run(_with_client(lambda client: client.retry(job_id, reason=reason)))
    Console().print(
        f"job {job_id} is {view.status} again (run {view.run}, from step {view.current_step})"
    )


@protocol_app.command("schema")
def protocol_schema() -> None:
    """Print the JSON Schemas of every message."""
    from segue.cli_views import protocol_schemas

    json.dump(protocol_schemas(), sys.stdout, indent=2)
    print()


async def _with_client(action: Callable[[SegueClient], Awaitable[T]]) -> T:
    from segue.client import SegueClient

    settings = settings_or_exit()
    configure_logging("warning", settings.log_format)
    async with SegueClient(settings.amqp_url, namespace=settings.namespace) as client:
        return await action(client)
