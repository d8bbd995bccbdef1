"""``segue schedules``: add, list, pause, resume and remove recurring jobs.

The commands talk to PostgreSQL directly (``SEGUE_DATABASE_URL``), like
``segue outbox``: schedules are rows the orchestrators' schedulers read, so a
change applies from their next look (every ``SEGUE_SCHEDULE_INTERVAL_S``).
``add`` checks what it is given against the workflow file
(``SEGUE_WORKFLOW_CONFIG``, or ``--file``) before storing anything; a bad option
exits with status 2 and names it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segue.cli_support import fail, run, settings_or_exit
from segue.errors import SegueError
from segue.protocol.names import MAX_PRIORITY
from segue.workflows.cron import DEFAULT_TIMEZONE, CronError, check_cron, check_timezone, next_due

if TYPE_CHECKING:
    from segue.store.schedules import NewSchedule, ScheduleRow, ScheduleStore
    from segue.workflows.loader import Catalog

T = TypeVar("T")

schedules_app = typer.Typer(
    no_args_is_help=True, help="Recurring jobs: a workflow submitted each time a cron matches."
)

NameArgument = Annotated[str, typer.Argument(help="The schedule's name")]


class ScheduleOptionError(SegueError):
    """An option of ``segue schedules add`` that cannot be used: ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def new_schedule(
    name: str,
    workflow: str,
    cron: str,
    timezone: str,
    params_json: str,
    priority: int,
    enabled: bool,
    catalog: Catalog,
    now: datetime,
    owner: str | None = None,
) -> NewSchedule:
    """Check the options of ``add`` and make the schedule to store (due next after
    ``now``; its jobs belong to ``owner``, None: to nobody); raises
    :class:`ScheduleOptionError` naming the first bad option."""
    from segue.store.schedules import NewSchedule, ScheduleSource
    from segue.workflows.model import NAME_PATTERN, OWNER_PATTERN
    from segue.workflows.schedules import params_problems, unknown_workflow

    if not re.match(NAME_PATTERN, name):
        raise ScheduleOptionError("NAME", "a letter, then up to 99 letters, digits, '_' or '-'")
    try:
        check_cron(cron)
    except CronError as exc:
        raise ScheduleOptionError("--cron", str(exc)) from exc
    try:
        check_timezone(timezone)
    except CronError as exc:
        raise ScheduleOptionError("--timezone", str(exc)) from exc
    params = _params(params_json)
    loaded = catalog.get(workflow)
    if loaded is None:
        raise ScheduleOptionError("--workflow", unknown_workflow(workflow, catalog.names) or "")
    problems = params_problems(loaded.workflow, params)
    if problems:
        raise ScheduleOptionError("--params", f"invalid for {workflow!r}: {'; '.join(problems)}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise ScheduleOptionError("--priority", f"must be 0 to {MAX_PRIORITY}, got {priority}")
    if owner is not None and not re.fullmatch(OWNER_PATTERN, owner):
        raise ScheduleOptionError(
            "--owner",
            f"must be a RabbitMQ user name: 1 to 200 characters, no control characters, "
            f"got {owner!r}",
        )
    return NewSchedule(
        name=name,
        workflow=workflow,
        cron=cron,
        timezone=timezone,
        params=params,
        priority=priority,
        enabled=enabled,
        next_due_at=next_due(cron, timezone, now),
        source=ScheduleSource.CLI,
        owner=owner,
    )


def _params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleOptionError("--params", f"not JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise ScheduleOptionError("--params", 'must be a JSON object, e.g. \'{"region": "nl"}\'')
    return params


@schedules_app.command("add")
def schedules_add(
    name: NameArgument,
    workflow: Annotated[str, typer.Option(help="The workflow each job runs")],
    cron: Annotated[
        str, typer.Option(help="Five fields: minute hour day-of-month month day-of-week")
    ],
    params: Annotated[str, typer.Option(help="The jobs' params, a JSON object")] = "{}",
    timezone: Annotated[
        str, typer.Option(help="IANA time zone the cron is read in")
    ] = DEFAULT_TIMEZONE,
    priority: Annotated[int, typer.Option(help=f"0 to {MAX_PRIORITY}")] = 5,
    owner: Annotated[
        str | None,
        typer.Option(
            metavar="USER",
            help="RabbitMQ user the jobs belong to (without one, every user may act on them)",
        ),
    ] = None,
    paused: Annotated[bool, typer.Option(help="Store it paused (resume starts it)")] = False,
    file: Annotated[
        Path | None, typer.Option(help="Check against this file instead of SEGUE_WORKFLOW_CONFIG")
    ] = None,
) -> None:
    """Add a schedule; exits 2 naming the option that is wrong."""
    from segue.workflows.loader import load_workflows

    settings = settings_or_exit()
    try:
        catalog = load_workflows(file or settings.workflow_config)
        schedule = new_schedule(
            name, workflow, cron, timezone, params, priority, not paused, catalog, _now(), owner
        )
    except ScheduleOptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{exc.option}'") from exc
    except SegueError as exc:
        fail(str(exc))
    if not run(_with_schedules(lambda store: store.add(schedule))):
        fail(f"a schedule {name!r} exists already: remove it first")
    state = "paused" if paused else f"next run at {schedule.next_due_at.isoformat()}"
    Console().print(f"schedule {name!r} added ({state})")


@schedules_app.command("list")
def schedules_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show every schedule: when it runs next and what it did last."""
    rows = run(_with_schedules(lambda store: store.all()))
    if as_json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
        return
    if not rows:
        Console().print("no schedules")
        return
    Console().print(_table(rows))


@schedules_app.command("remove")
def schedules_remove(name: NameArgument) -> None:
    """Delete a schedule (one from the workflow file comes back at the next start)."""
    if not run(_with_schedules(lambda store: store.remove(name))):
        fail(f"no schedule {name!r}")
    Console().print(f"schedule {name!r} removed")


@schedules_app.command("pause")
def schedules_pause(name: NameArgument) -> None:
    """Stop a schedule firing until it is resumed (kept across restarts)."""
    if not run(_with_schedules(lambda store: store.set_enabled(name, False))):
        fail(f"no schedule {name!r}")
    Console().print(f"schedule {name!r} paused")


@schedules_app.command("resume")
def schedules_resume(name: NameArgument) -> None:
    """Start a paused schedule again, from the next time its cron matches (runs
    missed while it was paused are not made up)."""

    async def resume(store: ScheduleStore) -> datetime | None:
        row = await store.get(name)
        if row is None:
            return None
        due = next_due(row.cron, row.timezone, _now())
        return due if await store.set_enabled(name, True, due) else None

    due = run(_with_schedules(resume))
    if due is None:
        fail(f"no schedule {name!r}")
    Console().print(f"schedule {name!r} resumed (next run at {due.isoformat()})")


def _table(rows: list[ScheduleRow]) -> Table:
    table = Table(
        "name", "workflow", "cron", "owner", "state", "next run", "last job", "last error"
    )
    for row in rows:
        table.add_row(
            row.name,
            row.workflow,
            row.cron if row.timezone == "UTC" else f"{row.cron} ({row.timezone})",
            escape(row.owner or ""),
            ("enabled" if row.enabled else "paused") + f" [{row.source.value}]",
            row.next_due_at.isoformat(timespec="seconds") if row.enabled else "",
            "" if row.last_job_id is None else str(row.last_job_id),
            row.last_error or "",
        )
    return table


def _now() -> datetime:
    return datetime.now(UTC)


async def _with_schedules(action: Callable[[ScheduleStore], Awaitable[T]]) -> T:
    from segue.store.repository import Store
    from segue.store.schedules import ScheduleStore

    store = await Store.connect(settings_or_exit().database_url, pool_size=1)
    try:
        return await action(ScheduleStore(store))
    finally:
        await store.close()
