"""``segue jobs list``: bad filters are usage errors naming the option (no database
is reached: the filters are checked first), and what a page prints."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from rich.console import Console
from typer.testing import CliRunner

from segue.cli import app
from segue.cli_listing import page_json, print_page
from segue.protocol.messages import JobStatus
from segue.store.listing import Cursor, ErrorSummary, JobPage, JobSummary

# Nothing listens there: a command that got past its checks would fail with exit 1.
UNREACHABLE = {"SEGUE_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
WHEN = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("arguments", "option", "says"),
    [
        (["--status", "done"], "'--status'", "not a job status"),
        (["--since", "yesterday"], "'--since'", "neither ISO 8601"),
        (["--since", "1h", "--until", "2h"], "'--until'", "later than since"),
        (["--limit", "1001"], "'--limit'", "between 1 and 1000"),
        (["--after", "nonsense"], "'--after'", "not a cursor"),
    ],
)
def test_a_bad_filter_is_a_usage_error_naming_the_option(
    arguments: list[str], option: str, says: str
) -> None:
    result = CliRunner().invoke(app, ["jobs", "list", *arguments], env=UNREACHABLE)

    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.replace("│", " ").split())
    assert f"Invalid value for {option}" in flat
    assert says in flat


def summary(error: ErrorSummary | None = None, owner: str | None = "alice") -> JobSummary:
    return JobSummary(
        job_id=UUID(int=1),
        workflow="energy_plan",
        workflow_version="1",
        status=JobStatus.FAILED if error else JobStatus.SUCCEEDED,
        current_step="simulate",
        priority=5,
        reference=None,
        owner=owner,
        run=1,
        created_at=WHEN,
        updated_at=WHEN,
        finished_at=WHEN,
        error=error,
    )


def test_a_page_prints_its_jobs_and_how_to_get_the_next_one() -> None:
    cursor = Cursor(WHEN, UUID(int=1))
    page = JobPage([summary(ErrorSummary("DemoFailure", "step [bold]x[/bold] failed"))], cursor)
    console = Console(record=True, width=200)

    print_page(console, page)

    text = console.export_text()
    assert str(UUID(int=1)) in text
    assert "step [bold]x[/bold] failed" in text  # database text is never rich markup
    assert f"--after {cursor.token()}" in text


def test_the_json_of_a_page_carries_the_next_cursor() -> None:
    cursor = Cursor(WHEN, UUID(int=1))

    assert page_json(JobPage([summary()], cursor))["next_after"] == cursor.token()
    assert page_json(JobPage([], None)) == {"jobs": [], "next_after": None}
