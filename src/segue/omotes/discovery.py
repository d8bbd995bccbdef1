"""Segue's workflow catalog as the OMOTES ``AvailableWorkflows`` message: pure, no I/O.

Every workflow of the catalog is offered (legacy single-step ones and format-1
ones alike), with each parameter type and constraint OMOTES knows:

| Segue | OMOTES (``WorkflowParameter``) |
|---|---|
| string (``enum`` options) | ``StringParameter`` (``default``, ``enum_options`` key/display name) |
| boolean | ``BooleanParameter`` |
| integer | ``IntegerParameter`` (``default``, ``minimum``, ``maximum``: int64) |
| float | ``FloatParameter`` (float32, as in OMOTES) |
| datetime | ``DateTimeParameter``: ``default`` as ISO 8601 in UTC **without** offset |
| duration | ``DurationParameter``: ``default``/``minimum``/``maximum`` in seconds |
| list | left out (see below) |
| ``constraints`` | ``Constraint`` (relation upper-cased: ``GREATER`` ...) |

What OMOTES cannot say is left to the server's checks, which apply anyway:
string ``min_length``/``max_length``, datetime ``minimum``/``maximum`` and
``required``.

A datetime default goes out as OMOTES's own files write it (naive, here UTC:
``2030-12-31T23:00:00``), so a client that mixes the default with its own
naive datetimes keeps working: the SDK compares datetimes in parameter
constraints, and an aware one next to a naive one would raise.

A ``list`` parameter has no OMOTES type. It is left out of the offer: the SDK
sends only the parameters it was offered, so such a job gets the list's default
(or none). A workflow with a required list parameter without a default could
never be submitted by an OMOTES client, so it is not offered at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC

from segue.omotes.wire.omotes_wire_pb2 import (
    AvailableWorkflows,
    BooleanParameter,
    Constraint,
    DateTimeParameter,
    DurationParameter,
    FloatParameter,
    IntegerParameter,
    StringEnum,
    StringParameter,
    Workflow,
    WorkflowParameter,
)
from segue.workflows import model
from segue.workflows.loader import Catalog
from segue.workflows.timevalues import parse_datetime, parse_duration


@dataclass(frozen=True)
class Offer:
    """The ``AvailableWorkflows`` message, and what was left out of it (and why)."""

    message: AvailableWorkflows
    left_out: list[str] = field(default_factory=list)


def available_workflows(catalog: Catalog) -> Offer:
    """The workflows of ``catalog`` as OMOTES clients see them."""
    offer = AvailableWorkflows()
    left_out: list[str] = []
    for loaded in catalog:
        workflow = workflow_message(loaded.workflow, left_out)
        if workflow is not None:
            offer.workflows.append(workflow)
    return Offer(offer, left_out)


def workflow_message(workflow: model.Workflow, left_out: list[str]) -> Workflow | None:
    """One workflow; None (with the reason in ``left_out``) if OMOTES clients cannot
    submit it. Parameters OMOTES cannot describe are left out too, with a reason."""
    message = Workflow(type_name=workflow.name, type_description=workflow.description)
    for parameter in workflow.parameters:
        described = parameter_message(parameter)
        if described is not None:
            message.parameters.append(described)
            continue
        where = f"workflow {workflow.name!r}, parameter {parameter.name!r}"
        if parameter.required and parameter.default is None:
            left_out.append(
                f"workflow {workflow.name!r}: its required {parameter.type} parameter "
                f"{parameter.name!r} has no OMOTES type, so OMOTES clients cannot submit it"
            )
            return None
        left_out.append(f"{where}: a {parameter.type} has no OMOTES type (its default applies)")
    return message


def parameter_message(parameter: model.Parameter) -> WorkflowParameter | None:
    """One parameter; None for a type OMOTES does not have (``list``)."""
    message = WorkflowParameter(key_name=parameter.name)
    if parameter.title is not None:
        message.title = parameter.title
    if parameter.description is not None:
        message.description = parameter.description
    match parameter:
        case model.StringParameter():
            message.string_parameter.CopyFrom(_string(parameter))
        case model.BooleanParameter():
            message.boolean_parameter.CopyFrom(BooleanParameter(default=parameter.default))
        case model.IntegerParameter():
            message.integer_parameter.CopyFrom(
                IntegerParameter(
                    default=parameter.default, minimum=parameter.minimum, maximum=parameter.maximum
                )
            )
        case model.FloatParameter():
            message.float_parameter.CopyFrom(
                FloatParameter(
                    default=parameter.default, minimum=parameter.minimum, maximum=parameter.maximum
                )
            )
        case model.DatetimeParameter():
            message.datetime_parameter.CopyFrom(
                DateTimeParameter(default=naive_utc(parameter.default))
            )
        case model.DurationParameter():
            message.duration_parameter.CopyFrom(
                DurationParameter(
                    default=seconds(parameter.default),
                    minimum=seconds(parameter.minimum),
                    maximum=seconds(parameter.maximum),
                )
            )
        case _:
            return None
    message.constraints.extend(
        Constraint(
            other_key_name=c.other, relation=Constraint.RelationType.Value(c.relation.upper())
        )
        for c in parameter.constraints
    )
    return message


def _string(parameter: model.StringParameter) -> StringParameter:
    message = StringParameter(default=parameter.default)
    for option in parameter.enum or []:
        message.enum_options.append(
            StringEnum(key_name=option.value, display_name=option.label or option.value)
        )
    return message


def naive_utc(value: str | None) -> str | None:
    """A Segue datetime (with offset) as OMOTES files write one: ISO 8601 in UTC,
    without offset (``2030-12-31T23:00:00+01:00`` -> ``2030-12-31T22:00:00``)."""
    if value is None:
        return None
    return parse_datetime(value).astimezone(UTC).replace(tzinfo=None).isoformat()


def seconds(value: model.DurationValue | None) -> float | None:
    """A Segue duration (ISO 8601 or seconds) in seconds, as OMOTES sends durations."""
    return None if value is None else parse_duration(value).total_seconds()
