"""``segue workflows check`` and ``list --file``: exit codes and precise messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segue.cli import app

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "workflow_config.json"


def test_check_accepts_the_shipped_config() -> None:
    result = CliRunner().invoke(app, ["workflows", "check", str(DEMO)])
    assert result.exit_code == 0, result.output
    assert "energy_plan" in result.output


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            [{"name": "a", "queue": "a", "timeout_s": 0}],
            "$.workflows[0].steps[0].timeout_s: Input should be greater than 0",
        ),
        (
            [{"name": "a", "queue": "a", "next": "nowhere"}],
            "$.workflows[0].steps[0].next: ",
        ),
    ],
)
def test_check_rejects_an_invalid_file_with_path_and_reason(
    tmp_path: Path, steps: list[dict[str, object]], expected: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"workflows": [{"name": "w", "steps": steps}]}))
    result = CliRunner().invoke(app, ["workflows", "check", str(path)])
    assert result.exit_code == 1
    assert expected in result.output


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["workflows", "check", str(tmp_path / "none.json")])
    assert result.exit_code == 1
    assert "not found" in result.output


def test_list_from_a_file_shows_parameter_schemas_as_json() -> None:
    result = CliRunner().invoke(app, ["workflows", "list", "--file", str(DEMO), "--json"])
    assert result.exit_code == 0, result.output
    listed = {info["name"]: info for info in json.loads(result.output)}
    assert {"energy_plan", "quick_check"} <= set(listed)
    schema = listed["energy_plan"]["parameters_schema"]
    assert schema["properties"]["horizon_years"]["maximum"] == 50
    assert listed["energy_plan"]["steps"][0] == "prepare"


def test_submit_refuses_a_malformed_parameter() -> None:
    result = CliRunner().invoke(app, ["submit", "energy_plan", "-p", "no-equals-sign"])
    assert result.exit_code == 2
    assert "not key=value" in result.output
