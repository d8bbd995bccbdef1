"""``segue schedules add`` refuses bad options with exit status 2, naming the option,
before it touches the database."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from segue import cli_schedules
from segue.cli import app
from segue.cli_schedules import ScheduleOptionError, new_schedule
from segue.store.schedules import ScheduleRow, ScheduleSource
from segue.workflows.loader import load_workflows

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "workflow_config.json"
NOW = datetime(2026, 1, 1, 10, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("options", "option", "reason"),
    [
        (["--cron", "*/5 * * *"], "'--cron'", "5 fields"),
        (["--cron", "99 * * * *"], "'--cron'", "invalid cron expression"),
        (["--timezone", "Mars/Base"], "'--timezone'", "unknown time zone"),
        (["--workflow", "nope"], "'--workflow'", "unknown workflow 'nope'"),
        (["--params", "{not json"], "'--params'", "not JSON"),
        (["--params", "[1, 2]"], "'--params'", "must be a JSON object"),
        (["--params", '{"horizon_years": 500}'], "'--params'", "horizon_years"),
        (["--priority", "12"], "'--priority'", "must be 0 to 9"),
        (["--owner", ""], "'--owner'", "must be a RabbitMQ user name"),
        (["--owner", "x" * 201], "'--owner'", "1 to 200 characters"),
        (["--owner", "bob\tsmith"], "'--owner'", "no control characters"),
    ],
)
def test_a_bad_option_exits_2_and_names_it(options: list[str], option: str, reason: str) -> None:
    defaults = {"--workflow": "energy_plan", "--cron": "*/5 * * * *"}
    for key, value in zip(options[::2], options[1::2], strict=True):
        defaults[key] = value
    argv = ["schedules", "add", "nightly", "--file", str(DEMO)]
    for key, value in defaults.items():
        argv += [key, value]

    result = CliRunner().invoke(app, argv, env={"COLUMNS": "300"})

    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.output
    assert reason in result.output


def test_a_valid_schedule_is_due_at_the_next_match() -> None:
    schedule = new_schedule(
        "nightly",
        "energy_plan",
        "*/5 * * * *",
        "Europe/Amsterdam",
        '{"region": "de"}',
        3,
        True,
        load_workflows(DEMO),
        NOW,
    )

    assert schedule.next_due_at == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert (schedule.params, schedule.priority, schedule.source) == (
        {"region": "de"},
        3,
        ScheduleSource.CLI,
    )


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ScheduleOptionError) as error:
        new_schedule(
            "9 lives", "energy_plan", "* * * * *", "UTC", "{}", 5, True, load_workflows(DEMO), NOW
        )
    assert error.value.option == "NAME"


def test_a_schedule_added_with_an_owner_makes_jobs_of_that_owner() -> None:
    catalog = load_workflows(DEMO)
    args = ("nightly", "energy_plan", "*/5 * * * *", "UTC", "{}", 5, True, catalog, NOW)

    assert new_schedule(*args, owner="segue-planner").owner == "segue-planner"
    assert new_schedule(*args).owner is None


class ListedStore:
    """Stands in for the database: ``all`` lists the schedules it was given."""

    def __init__(self, rows: list[ScheduleRow]) -> None:
        self.rows = rows

    async def all(self) -> list[ScheduleRow]:
        return self.rows


def test_list_shows_each_schedules_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    def listed(**fields: Any) -> ScheduleRow:
        values: dict[str, Any] = {
            "workflow": "energy_plan",
            "cron": "0 3 * * *",
            "timezone": "UTC",
            "params": {},
            "priority": 5,
            "enabled": True,
            "next_due_at": NOW,
            "last_due_at": None,
            "last_fired_at": None,
            "last_job_id": None,
            "last_error": None,
            "source": ScheduleSource.CLI,
            "created_at": NOW,
            "updated_at": NOW,
        }
        return ScheduleRow(**(values | fields))

    rows = [listed(name="nightly", owner="segue-planner"), listed(name="weekly")]

    async def with_schedules(action: Callable[[Any], Awaitable[Any]]) -> Any:
        return await action(ListedStore(rows))

    monkeypatch.setattr(cli_schedules, "_with_schedules", with_schedules)

    table = CliRunner().invoke(app, ["schedules", "list"], env={"COLUMNS": "300"})
    as_json = CliRunner().invoke(app, ["schedules", "list", "--json"])

    assert table.exit_code == 0, table.output
    assert "owner" in table.output
    assert "segue-planner" in table.output
    assert as_json.exit_code == 0, as_json.output
    assert [row["owner"] for row in json.loads(as_json.output)] == ["segue-planner", None]
