"""Segue's catalog as the OMOTES ``AvailableWorkflows`` (segue.omotes.discovery): pure."""

from __future__ import annotations

from typing import Any

from segue.omotes.discovery import available_workflows, naive_utc
from segue.omotes.wire.omotes_wire_pb2 import AvailableWorkflows, Constraint, WorkflowParameter
from segue.workflows.loader import parse_workflows

LEGACY: list[dict[str, Any]] = [
    {
        "workflow_type_name": "simulator",
        "workflow_type_description_name": "Conceptual Design - Simulation",
        "workflow_parameters": [
            {
                "parameter_type": "string",
                "key_name": "mode",
                "title": "Mode",
                "description": "How exact",
                "default": "fast",
                "enum_options": [
                    {"key_name": "fast", "display_name": "Fast"},
                    {"key_name": "exact", "display_name": "Exact"},
                ],
            },
            {"parameter_type": "boolean", "key_name": "verbose", "default": True},
            {
                "parameter_type": "integer",
                "key_name": "runs",
                "default": 3,
                "minimum": -1,
                "maximum": 10,
            },
            {"parameter_type": "float", "key_name": "gap", "default": 0.25, "maximum": 1.5},
            {"parameter_type": "datetime", "key_name": "start", "default": "2030-01-01T00:00:00"},
            {
                "parameter_type": "datetime",
                "key_name": "end",
                "default": "2030-12-31T23:00:00",
                "constraints": [{"other_key_name": "start", "relation": "greater_or_eq"}],
            },
            {
                "parameter_type": "duration",
                "key_name": "step",
                "default": 3600,
                "minimum": 60,
                "maximum": 86400.5,
            },
        ],
    },
    {"workflow_type_name": "grow_simulator", "workflow_type_description_name": "Grow"},
]


def parameters(offer: AvailableWorkflows, workflow: str) -> dict[str, WorkflowParameter]:
    (found,) = [w for w in offer.workflows if w.type_name == workflow]
    return {p.key_name: p for p in found.parameters}


def test_a_legacy_file_is_offered_as_omotes_wrote_it() -> None:
    offer = available_workflows(parse_workflows(LEGACY))
    message = AvailableWorkflows.FromString(offer.message.SerializeToString())

    assert offer.left_out == []
    assert [(w.type_name, w.type_description) for w in message.workflows] == [
        ("simulator", "Conceptual Design - Simulation"),
        ("grow_simulator", "Grow"),
    ]
    params = parameters(message, "simulator")
    assert [p.WhichOneof("parameter_type_schema") for p in params.values()] == [
        "string_parameter",
        "boolean_parameter",
        "integer_parameter",
        "float_parameter",
        "datetime_parameter",
        "datetime_parameter",
        "duration_parameter",
    ]
    mode = params["mode"]
    assert (mode.title, mode.description, mode.string_parameter.default) == (
        "Mode",
        "How exact",
        "fast",
    )
    assert [(o.key_name, o.display_name) for o in mode.string_parameter.enum_options] == [
        ("fast", "Fast"),
        ("exact", "Exact"),
    ]
    assert not params["verbose"].HasField("title")
    assert params["verbose"].boolean_parameter.default is True
    runs = params["runs"].integer_parameter
    assert (runs.default, runs.minimum, runs.maximum) == (3, -1, 10)
    gap = params["gap"].float_parameter
    assert (gap.default, gap.maximum, gap.HasField("minimum")) == (0.25, 1.5, False)
    assert params["start"].datetime_parameter.default == "2030-01-01T00:00:00"
    assert [(c.other_key_name, c.relation) for c in params["end"].constraints] == [
        ("start", Constraint.GREATER_OR_EQ)
    ]
    step = params["step"].duration_parameter
    assert (step.default, step.minimum, step.maximum) == (3600, 60, 86400.5)


def test_format_1_values_are_said_the_omotes_way() -> None:
    catalog = parse_workflows(
        {
            "format_version": 1,
            "workflows": [
                {
                    "name": "plan",
                    "description": "Plan",
                    "parameters": [
                        {"name": "at", "type": "datetime", "default": "2030-06-01T02:00:00+02:00"},
                        {"name": "span", "type": "duration", "default": "PT1H30M"},
                        {"name": "pick", "type": "string", "enum": [{"value": "a"}]},
                    ],
                    "steps": [{"name": "go", "queue": "go"}],
                }
            ],
        }
    )

    params = parameters(available_workflows(catalog).message, "plan")

    assert params["at"].datetime_parameter.default == "2030-06-01T00:00:00"
    assert params["span"].duration_parameter.default == 5400
    assert not params["span"].duration_parameter.HasField("minimum")
    assert [(o.key_name, o.display_name) for o in params["pick"].string_parameter.enum_options] == [
        ("a", "a")
    ]
    assert not params["pick"].string_parameter.HasField("default")


def list_workflow(**list_parameter: Any) -> dict[str, Any]:
    return {
        "format_version": 1,
        "workflows": [
            {
                "name": "scenarios",
                "parameters": [
                    {"name": "n", "type": "integer"},
                    {
                        "name": "items",
                        "type": "list",
                        "items": {"type": "string"},
                        **list_parameter,
                    },
                ],
                "steps": [{"name": "go", "queue": "go"}],
            }
        ],
    }


def test_an_optional_list_parameter_is_left_out_and_its_default_applies() -> None:
    offer = available_workflows(parse_workflows(list_workflow(default=["a"])))

    assert list(parameters(offer.message, "scenarios")) == ["n"]
    assert len(offer.left_out) == 1
    assert "'items'" in offer.left_out[0]


def test_a_workflow_with_a_required_list_parameter_is_not_offered() -> None:
    offer = available_workflows(parse_workflows(list_workflow(required=True)))

    assert list(offer.message.workflows) == []
    assert "cannot submit" in offer.left_out[0]


def test_naive_utc_is_iso_without_offset() -> None:
    assert naive_utc("2030-01-01T00:30:00-01:00") == "2030-01-01T01:30:00"
    assert naive_utc("2030-01-01T00:00:00.250+00:00") == "2030-01-01T00:00:00.250000"
    assert naive_utc(None) is None
