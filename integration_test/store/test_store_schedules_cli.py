"""``segue schedules`` against a real database: add, list (table and JSON), pause,
resume and remove, each refusing names it does not know."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from segue.cli import app

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "workflow_config.json"


def segue(database_url: str, *argv: str) -> tuple[int, str]:
    env = {"SEGUE_DATABASE_URL": database_url, "SEGUE_WORKFLOW_CONFIG": str(DEMO)}
    result = CliRunner().invoke(app, list(argv), env={**env, "COLUMNS": "250"})
    return result.exit_code, result.output


def listed(database_url: str) -> list[dict[str, object]]:
    code, output = segue(database_url, "schedules", "list", "--json")
    assert code == 0, output
    rows: list[dict[str, object]] = json.loads(output)
    return rows


def test_the_schedule_commands_end_to_end(database_url: str) -> None:
    add = ["schedules", "add", "nightly", "--workflow", "energy_plan", "--cron", "0 3 * * *"]
    code, output = segue(database_url, *add, "--params", '{"region": "de"}', "--priority", "3")
    assert code == 0, output
    assert "next run at" in output
    code, output = segue(database_url, *add)
    assert code == 1
    assert "exists already" in output

    (row,) = listed(database_url)
    assert (row["name"], row["workflow"], row["cron"], row["timezone"]) == (
        "nightly",
        "energy_plan",
        "0 3 * * *",
        "UTC",
    )
    assert (row["params"], row["priority"], row["enabled"], row["source"]) == (
        {"region": "de"},
        3,
        True,
        "cli",
    )
    assert str(row["next_due_at"]).endswith("T03:00:00+00:00")
    code, output = segue(database_url, "schedules", "list")
    assert code == 0
    assert "nightly" in output
    assert "energy_plan" in output

    assert segue(database_url, "schedules", "pause", "nightly")[0] == 0
    assert listed(database_url)[0]["enabled"] is False
    code, output = segue(database_url, "schedules", "resume", "nightly")
    assert code == 0, output
    assert listed(database_url)[0]["enabled"] is True

    assert segue(database_url, "schedules", "remove", "nightly")[0] == 0
    assert listed(database_url) == []
    for command in ("pause", "resume", "remove"):
        code, output = segue(database_url, "schedules", command, "nightly")
        assert code == 1
        assert "no schedule 'nightly'" in output


def test_an_owner_given_to_add_is_listed(database_url: str) -> None:
    add = ["schedules", "add", "nightly", "--workflow", "energy_plan", "--cron", "0 3 * * *"]
    code, output = segue(database_url, *add, "--owner", "segue-planner")
    assert code == 0, output
    code, output = segue(database_url, *add[:2], "weekly", *add[3:])
    assert code == 0, output

    assert [(row["name"], row["owner"]) for row in listed(database_url)] == [
        ("nightly", "segue-planner"),
        ("weekly", None),
    ]
    code, output = segue(database_url, "schedules", "list")
    assert code == 0, output
    assert "segue-planner" in output
