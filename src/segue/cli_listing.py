"""What ``segue jobs list`` prints: a table of one page of jobs, or its JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segue.cli_views import STATUS_STYLE
from segue.store.listing import JobPage, JobSummary

ERROR_CHARS = 80
"""Longest error text shown in a table cell (``segue jobs show`` has all of it)."""


def page_json(page: JobPage) -> dict[str, Any]:
    """The page as JSON: ``jobs`` and ``next_after`` (the ``--after`` token, or null)."""
    return {
        "jobs": [job.to_json() for job in page.jobs],
        "next_after": None if page.next is None else page.next.token(),
    }


def print_page(console: Console, page: JobPage) -> None:
    """A table of the page's jobs, then how to ask for the next page."""
    if not page.jobs:
        console.print("no jobs match")
        return
    table = Table(title=f"{len(page.jobs)} jobs, newest first")
    for column in ("job", "workflow", "status", "step", "created (UTC)", "owner", "error"):
        table.add_column(column, overflow="fold" if column == "job" else "ellipsis")
    for job in page.jobs:
        table.add_row(*_cells(job))
    console.print(table)
    if page.next is not None:
        console.print(f"next page: the same options and --after {page.next.token()}")


def _cells(job: JobSummary) -> tuple[str, ...]:
    """One row; every text from the database is escaped (rich reads [markup])."""
    style = STATUS_STYLE[job.status]
    error = "" if job.error is None else _shortened(str(job.error), ERROR_CHARS)
    return (
        str(job.job_id),
        escape(f"{job.workflow} v{job.workflow_version}"),
        f"[{style}]{job.status}[/]",
        escape(job.current_step or ""),
        _when(job.created_at),
        escape(job.owner or ""),
        escape(error),
    )


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def _shortened(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
