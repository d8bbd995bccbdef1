"""The typed model of a workflow definition file (format version 1).

The model checks each object's own shape; cross-references (unknown steps,
unreachable steps, duplicates) are checked by :mod:`segue.workflows.lint`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from segue.protocol.names import QUEUE_NAME_PATTERN

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,99}$"
VAR_PATTERN = (
    r"^(params\.[A-Za-z_][A-Za-z0-9_]*|outputs\.[A-Za-z][A-Za-z0-9_.-]*(\.[A-Za-z0-9_]+)*)$"
)


class Strict(BaseModel):
    """Frozen model that rejects unknown keys (a typo in the file is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --- parameters ------------------------------------------------------------------------


class ParameterBase(Strict):
    """Fields shared by every parameter type."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    title: str | None = None
    description: str | None = None
    required: bool = Field(
        default=False, description="the submitter must give a value (no default applies)"
    )


class EnumOption(Strict):
    """One allowed value of a string parameter, with the label a UI shows."""

    value: str
    label: str | None = None


class StringParameter(ParameterBase):
    """A string, optionally restricted to ``enum`` options."""

    type: Literal["string"] = "string"
    default: str | None = None
    enum: list[EnumOption] | None = Field(default=None, min_length=1)
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)


class BooleanParameter(ParameterBase):
    """True or false."""

    type: Literal["boolean"] = "boolean"
    default: bool | None = None


class IntegerParameter(ParameterBase):
    """A whole number within optional bounds."""

    type: Literal["integer"] = "integer"
    default: int | None = None
    minimum: int | None = None
    maximum: int | None = None


class FloatParameter(ParameterBase):
    """A number within optional bounds."""

    type: Literal["float"] = "float"
    default: float | None = None
    minimum: float | None = None
    maximum: float | None = None


Parameter = Annotated[
    StringParameter | BooleanParameter | IntegerParameter | FloatParameter,
    Field(discriminator="type"),
]


# --- branch conditions -----------------------------------------------------------------

ComparisonOp = Literal["==", "!=", "<", "<=", ">", ">=", "in"]


class Comparison(Strict):
    """``var op value``, e.g. ``{"var": "params.horizon", "op": ">=", "value": 10}``."""

    var: str = Field(pattern=VAR_PATTERN)
    op: ComparisonOp
    value: Any


class AllOf(Strict):
    """True when every condition is true."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(Strict):
    """True when at least one condition is true."""

    any: list[Condition] = Field(min_length=1)


class Not(Strict):
    """Negation of a condition."""

    not_: Condition = Field(alias="not")


class Exists(Strict):
    """True when the variable is present (and not null)."""

    exists: str = Field(pattern=VAR_PATTERN)


Condition = Comparison | AllOf | AnyOf | Not | Exists


class Branch(Strict):
    """Go to ``goto`` when ``when`` holds; ``goto: null`` ends the workflow."""

    when: Condition
    goto: str | None


class Switch(Strict):
    """The first branch whose condition holds wins; otherwise ``default``."""

    branches: list[Branch] = Field(min_length=1)
    default: str | None = None


# --- steps and workflows ---------------------------------------------------------------


class RetryPolicy(Strict):
    """How a failed step is retried: exponential backoff with jitter."""

    max_attempts: int = Field(default=1, ge=1, le=100)
    initial_delay_s: float = Field(default=1.0, ge=0)
    backoff_factor: float = Field(default=2.0, ge=1)
    max_delay_s: float = Field(default=300.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1, description="fraction of the delay")
    non_retryable: list[str] = Field(
        default_factory=list, description="error kinds that fail the step at once"
    )


class Step(Strict):
    """One unit of work, run by a worker serving ``queue``."""

    name: str = Field(pattern=NAME_PATTERN)
    queue: str = Field(pattern=QUEUE_NAME_PATTERN.pattern)
    description: str = ""
    timeout_s: float | None = Field(default=None, gt=0, description="max run time of one attempt")
    heartbeat_s: float | None = Field(
        default=60.0, gt=0, description="an attempt silent this long is lost"
    )
    dispatch_timeout_s: float | None = Field(
        default=None, gt=0, description="max wait for a worker to start the task"
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    max_crashes: int = Field(default=3, ge=1, description="lost attempts before the job fails")
    next: str | Switch | None = Field(
        default=None, description="the next step, a switch over conditions, or null (the end)"
    )
    on_failure: str | None = Field(
        default=None, description="step to continue with when this step failed for good"
    )


class Workflow(Strict):
    """A named, versioned sequence of steps with typed parameters."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    version: str = Field(default="1", min_length=1, max_length=50)
    timeout_s: float | None = Field(default=None, gt=0, description="max life time of a job")
    parameters: list[Parameter] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    @property
    def first_step(self) -> Step:
        """The step every job starts with."""
        return self.steps[0]

    def step(self, name: str) -> Step:
        """The step called ``name``; KeyError when there is none."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


class WorkflowFile(Strict):
    """The whole ``workflow_config.json``."""

    schema_: str | None = Field(default=None, alias="$schema")
    format_version: Literal[1] = 1
    workflows: list[Workflow] = Field(min_length=1)


AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()
Branch.model_rebuild()
