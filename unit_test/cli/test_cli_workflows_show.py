"""``segue workflows show``: a workflow as an outline or a Mermaid flowchart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segue.cli import app

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "workflow_config.json"
LEGACY = REPO / "config" / "examples" / "omotes_legacy.json"


def show(*args: str) -> tuple[int, str]:
    """Run ``segue workflows show ARGS``: exit code and output."""
    result = CliRunner().invoke(app, ["workflows", "show", *args])
    return result.exit_code, result.output


def test_mermaid_of_a_file() -> None:
    code, output = show("energy_plan", "--file", str(DEMO), "--format", "mermaid")
    assert code == 0, output
    assert output.startswith("flowchart TD\n")
    assert '    s1 -->|"params.simulate == true"| s2\n' in output
    assert output.endswith("    s3 --> done\n")


def test_outline_is_the_default_format() -> None:
    code, output = show("energy_plan", "--file", str(DEMO))
    assert code == 0, output
    assert output.startswith("energy_plan (version 1)\n")
    assert "  horizon_years: integer, default 10, minimum 1, maximum 50\n" in output
    assert "     next: simulate if params.simulate == true; otherwise report\n" in output


def test_reads_the_configured_file_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGUE_WORKFLOW_CONFIG", str(LEGACY))
    code, output = show("simulator", "--format", "outline")
    assert code == 0, output
    assert "  end_time: datetime, default 2019-01-08T00:00:00+00:00, must be greater than " in (
        output
    )


def test_unknown_workflow_names_the_ones_there_are() -> None:
    code, output = show("energy", "--file", str(DEMO))
    assert code == 1
    assert "no workflow 'energy'" in output
    assert "(workflows: energy_plan, quick_check, scenario_study)" in output


def test_invalid_file_fails_with_its_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"workflows": [{"name": "w", "steps": []}]}))
    code, output = show("w", "--file", str(path))
    assert code == 1
    assert "$.workflows[0].steps" in output


def test_unknown_format_is_a_usage_error() -> None:
    code, output = show("energy_plan", "--file", str(DEMO), "--format", "png")
    assert code == 2
    assert "png" in output
