"""The JSON Schema of ``workflow_config.json``, generated from the pydantic model.

``config/workflow_config.schema.json`` is this schema, committed so editors can
check and complete the file; a unit test keeps it in step with the model.
Regenerate it with::

    .venv/bin/python -m segue.workflows.schema > config/workflow_config.schema.json
"""

from __future__ import annotations

import json
from typing import Any

from segue.workflows.model import WorkflowFile

TITLE = "Segue workflow definitions"
DESCRIPTION = (
    "The workflows a Segue orchestrator runs (config/workflow_config.json, format "
    "version 1). Each workflow has typed parameters and a graph of steps; each step "
    "runs on the workers serving its queue, with its own timeouts and retry policy, "
    "and continues with 'next' (a step name, a switch over conditions on params and "
    "earlier outputs, or null for the end) or, once it failed for good, 'on_failure'. "
    "A step may name its inputs ('input'), run once per item of a list ('map'), run "
    "again until a condition holds ('repeat', bounded), or, instead of a queue, run "
    "other steps side by side and join them ('parallel'). "
    "Parameters are strings, booleans, integers, floats, datetimes (ISO 8601 with a "
    "timezone offset), durations (ISO 8601 like PT1H30M, or seconds) or lists, with "
    "optional constraints relating them to other parameters. "
    "Beyond this schema, 'segue workflows check' rejects unknown step references, "
    "loops without 'repeat', unreachable steps, duplicate names, inputs and conditions "
    "on values that never exist, maps over what is no list, misused parallel "
    "branches, contradictory parameter specs and constraints on unknown parameters or "
    "between values that do not compare. "
    "The optional 'schedules' list defines recurring jobs: a workflow, its params and a "
    "five-field cron expression read in a time zone (default UTC). "
    "The legacy OMOTES format (a top-level array of workflow types) also loads; this "
    "schema does not describe it."
)


def file_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow file."""
    generated = WorkflowFile.model_json_schema(by_alias=True)
    head = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": TITLE,
        "description": DESCRIPTION,
    }
    return head | {k: v for k, v in generated.items() if k not in head}


def render_file_schema() -> str:
    """:func:`file_schema` as the text of the committed file."""
    return json.dumps(file_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render_file_schema(), end="")
