"""The committed JSON Schema of workflow files matches the model and the shipped file."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from segue.workflows.schema import file_schema, render_file_schema

CONFIG = Path(__file__).resolve().parents[2] / "config"
REGENERATE = ".venv/bin/python -m segue.workflows.schema > config/workflow_config.schema.json"


def test_committed_schema_is_generated_from_the_model() -> None:
    committed = (CONFIG / "workflow_config.schema.json").read_text(encoding="utf-8")
    assert committed == render_file_schema(), f"schema out of date; regenerate: {REGENERATE}"


def test_schema_is_valid_and_documented() -> None:
    schema = file_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Segue workflow definitions"
    assert "format version 1" in schema["description"]
    step = schema["$defs"]["Step"]["properties"]
    assert "task type" in step["queue"]["description"]


def test_shipped_config_is_valid_against_the_committed_schema() -> None:
    schema = json.loads((CONFIG / "workflow_config.schema.json").read_text(encoding="utf-8"))
    config = json.loads((CONFIG / "workflow_config.json").read_text(encoding="utf-8"))
    errors = [error.message for error in Draft202012Validator(schema).iter_errors(config)]
    assert errors == []
    assert config["$schema"] == "./workflow_config.schema.json"


def test_schema_rejects_what_the_model_rejects() -> None:
    validator = Draft202012Validator(file_schema())
    step = {"name": "a", "queue": "a", "timeout_s": 0}
    assert not validator.is_valid(
        {"format_version": 1, "workflows": [{"name": "w", "steps": [step]}]}
    )
    step = {
        "name": "a",
        "queue": "a",
        "next": {"branches": [{"when": {"exists": "x"}, "goto": None}]},
    }
    assert not validator.is_valid(
        {"format_version": 1, "workflows": [{"name": "w", "steps": [step]}]}
    )
    assert not validator.is_valid({"format_version": 1, "workflows": [], "extra": 1})
