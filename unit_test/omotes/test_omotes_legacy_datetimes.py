"""OMOTES workflow files write datetimes without an offset; Segue loads them as UTC."""

from __future__ import annotations

from typing import Any

import pytest

from segue.workflows.legacy import legacy_datetime
from segue.workflows.loader import WorkflowConfigError, parse_workflows
from segue.workflows.model import DatetimeParameter


def legacy_file(**datetime_parameter: Any) -> list[dict[str, Any]]:
    return [
        {
            "workflow_type_name": "simulator",
            "workflow_type_description_name": "Simulator",
            "workflow_parameters": [
                {"parameter_type": "datetime", "key_name": "start", **datetime_parameter}
            ],
        }
    ]


def default_of(data: list[dict[str, Any]]) -> str | None:
    loaded = parse_workflows(data).get("simulator")
    assert loaded is not None
    (parameter,) = loaded.workflow.parameters
    assert isinstance(parameter, DatetimeParameter)
    return parameter.default


@pytest.mark.parametrize(
    ("written", "loaded"),
    [
        ("2030-12-31T23:00:00", "2030-12-31T23:00:00+00:00"),
        ("2030-12-31T23:00:00.5", "2030-12-31T23:00:00.500000+00:00"),
        ("2030-12-31", "2030-12-31T00:00:00+00:00"),
        ("2030-12-31 23:00", "2030-12-31T23:00:00+00:00"),
        ("2030-12-31T23:00+01:00", "2030-12-31T23:00:00+01:00"),
        ("2030-12-31T23:00:00+01:00", "2030-12-31T23:00:00+01:00"),
        ("2030-12-31T23:00:00Z", "2030-12-31T23:00:00Z"),
    ],
)
def test_an_omotes_datetime_default_loads_as_utc_when_it_has_no_offset(
    written: str, loaded: str
) -> None:
    assert default_of(legacy_file(default=written)) == loaded


def test_what_is_no_datetime_at_all_is_still_refused_with_the_legacy_path() -> None:
    with pytest.raises(WorkflowConfigError) as refused:
        parse_workflows(legacy_file(default="New Year's Eve"))

    (problem,) = refused.value.problems
    assert problem.path == "$[0].workflow_parameters[0].default"
    assert "timezone offset" in problem.reason


def test_format_1_files_still_need_the_offset() -> None:
    data = {
        "format_version": 1,
        "workflows": [
            {
                "name": "plan",
                "parameters": [
                    {"name": "at", "type": "datetime", "default": "2030-01-01T00:00:00"}
                ],
                "steps": [{"name": "go", "queue": "go"}],
            }
        ],
    }

    with pytest.raises(WorkflowConfigError):
        parse_workflows(data)


def test_values_that_are_no_text_are_left_for_the_model() -> None:
    assert legacy_datetime(5) == 5
    assert legacy_datetime(None) is None
