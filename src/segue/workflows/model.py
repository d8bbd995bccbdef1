"""The typed model of a workflow definition file (format version 1).

The model checks each object's own shape; cross-references (unknown steps,
unreachable steps, duplicates) are checked by :mod:`segue.workflows.lint`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic.config import JsonDict

from segue.protocol.names import MAX_PRIORITY, QUEUE_NAME_PATTERN
from segue.workflows.cron import DEFAULT_TIMEZONE, check_cron, check_timezone
from segue.workflows.timevalues import (
    DATETIME_PATTERN,
    DURATION_PATTERN,
    parse_datetime,
    parse_duration,
)

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,99}$"
PARAMETER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
VAR_PATTERN = (
    r"^(params\.[A-Za-z_][A-Za-z0-9_]*|outputs\.[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+)$"
)
"""``params.<name>`` or ``outputs.<step>.<key>[.<key>...]``."""
INPUT_VAR_PATTERN = (
    r"^(params\.[A-Za-z_][A-Za-z0-9_]*"
    r"|outputs\.(_failure|[A-Za-z][A-Za-z0-9_-]*)(\.[A-Za-z0-9_-]+)*)$"
)
"""``params.<name>``, ``outputs.<step>`` (a whole output) or ``outputs.<step>.<key>...``;
``outputs._failure`` is the failure an ``on_failure`` step handles."""
OWNER_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,200}$"
"""A RabbitMQ user name a schedule's jobs belong to: 1 to 200 characters, none of them
a control character."""
DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
"""Largest step output (compact JSON, in bytes) a workflow accepts unless it says otherwise."""

UNION_TAGS = frozenset(
    {"string", "boolean", "integer", "float", "datetime", "duration", "list"}  # Parameter
    | {"comparison", "all_of", "any_of", "negation", "existence"}  # Condition
    | {"step_name", "switch"}  # Step.next
)
"""Tags of the tagged unions below. Pydantic puts them in error locations, where they
are not keys of the file; no field is named like one, so a loader can drop them."""


class Strict(BaseModel):
    """Frozen model that rejects unknown keys (a typo in the file is an error).

    Validation is strict: ``"10"`` is not an integer and ``"yes"`` is not a boolean
    (an integer is still accepted where a float is expected).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, strict=True)


# --- parameters ------------------------------------------------------------------------


Relation = Literal["greater", "greater_or_eq", "smaller", "smaller_or_eq", "eq"]


class Constraint(Strict):
    """This parameter's value must stand in ``relation`` to the value of parameter ``other``.

    E.g. on ``end_time``: ``{"other": "start_time", "relation": "greater"}``. It
    compares numbers, datetimes or durations, once defaults are applied; a
    constraint on a parameter without a value is not checked.
    """

    other: str = Field(pattern=PARAMETER_NAME_PATTERN, description="the parameter compared with")
    relation: Relation = Field(description="this value is greater / smaller / equal to the other")


class ParameterBase(Strict):
    """Fields shared by every parameter type."""

    name: str = Field(
        pattern=PARAMETER_NAME_PATTERN,
        description="the key of the parameter in a job's params; ``params.<name>`` in conditions",
    )
    title: str | None = Field(default=None, description="short label a UI shows")
    description: str | None = Field(default=None, description="help text a UI shows")
    required: bool = Field(
        default=False, description="the submitter must give a value (no default applies)"
    )
    constraints: list[Constraint] = Field(
        default_factory=list,
        description="relations to other parameters (numbers, datetimes and durations only)",
    )


class EnumOption(Strict):
    """One allowed value of a string parameter, with the label a UI shows."""

    value: str = Field(description="the value a job's params carry")
    label: str | None = Field(default=None, description="what a UI shows for the value")


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


def _datetime_field(description: str) -> Any:
    """An optional datetime field; its schema gives editors the format (the model checks it)."""
    extra: JsonDict = {"format": "date-time", "pattern": DATETIME_PATTERN}
    return Field(default=None, description=description, json_schema_extra=extra)


def _duration_field(description: str) -> Any:
    """An optional duration field; in its schema "pattern" applies to text, "minimum" to
    numbers (the model checks it)."""
    extra: JsonDict = {"format": "duration", "pattern": DURATION_PATTERN, "minimum": 0}
    return Field(default=None, description=description, json_schema_extra=extra)


class DatetimeParameter(ParameterBase):
    """A moment: ISO 8601 with a timezone offset, e.g. ``2030-01-01T00:00:00+00:00``.

    Values keep the text given; bounds compare the moments they stand for.
    """

    type: Literal["datetime"] = "datetime"
    default: str | None = _datetime_field("ISO 8601 with a timezone offset")
    minimum: str | None = _datetime_field("the earliest allowed moment")
    maximum: str | None = _datetime_field("the latest allowed moment")

    @field_validator("default", "minimum", "maximum", mode="before")
    @classmethod
    def _is_datetime(cls, value: Any) -> Any:
        """Refuse text that is no datetime with an offset (the message says the format)."""
        if value is not None:
            parse_datetime(value)
        return value


DurationValue = str | int | float
"""An ISO 8601 duration (``PT1H30M``, ``P7D``) or a number of seconds."""


class DurationParameter(ParameterBase):
    """A length of time: ISO 8601 (``PT1H30M``, ``P7D``) or a number of seconds.

    Values keep the form given (text or number); bounds and relations compare the
    lengths they stand for, so ``PT1H`` equals ``3600``.
    """

    type: Literal["duration"] = "duration"
    default: DurationValue | None = _duration_field(
        "ISO 8601 duration (no years or months) or seconds"
    )
    minimum: DurationValue | None = _duration_field("the shortest allowed")
    maximum: DurationValue | None = _duration_field("the longest allowed")

    @field_validator("default", "minimum", "maximum", mode="before")
    @classmethod
    def _is_duration(cls, value: Any) -> Any:
        """Refuse what is no duration with one message (rather than one per union member)."""
        if value is not None:
            parse_duration(value)
        return value


ItemType = Literal["string", "integer", "float", "boolean"]
ListItem = str | int | float | bool


class ListItems(Strict):
    """What each item of a list parameter is."""

    type: ItemType = Field(description="every item is a string, integer, float or boolean")


class ListParameter(ParameterBase):
    """A list of strings, integers, floats or booleans, e.g. the scenarios a map step runs."""

    type: Literal["list"] = "list"
    items: ListItems
    default: list[ListItem] | None = None
    min_items: int | None = Field(default=None, ge=0)
    max_items: int | None = Field(default=None, ge=0)


Parameter = Annotated[
    StringParameter
    | BooleanParameter
    | IntegerParameter
    | FloatParameter
    | DatetimeParameter
    | DurationParameter
    | ListParameter,
    Field(discriminator="type"),
]


# --- branch conditions -----------------------------------------------------------------

ComparisonOp = Literal["==", "!=", "<", "<=", ">", ">=", "in"]


class Comparison(Strict):
    """``var op value``, e.g. ``{"var": "params.horizon", "op": ">=", "value": 10}``.

    A missing variable, or values of different kinds under ``<``/``<=``/``>``/``>=``,
    make the comparison false. ``in`` is true when the variable equals an item of
    ``value`` (a list).
    """

    var: str = Field(
        pattern=VAR_PATTERN,
        description="params.<name> or outputs.<step>.<key>[.<key>...]",
    )
    op: ComparisonOp
    value: Any = Field(
        description="a list for 'in'; a number or string for <, <=, >, >=; any JSON value "
        "for == and !="
    )

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        """Reject a value the operator can never match (e.g. ``in`` with a string)."""
        op = info.data.get("op")
        if op == "in" and not isinstance(value, list):
            raise ValueError("the value of 'in' must be a list")
        ordered = isinstance(value, str) or (
            isinstance(value, int | float) and not isinstance(value, bool)
        )
        if op in ("<", "<=", ">", ">=") and not ordered:
            raise ValueError(f"the value of {op!r} must be a number or a string")
        return value


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

    exists: str = Field(
        pattern=VAR_PATTERN,
        description="params.<name> or outputs.<step>.<key>[.<key>...]",
    )


_CONDITION_KINDS: tuple[tuple[str, str, type[Strict]], ...] = (
    ("var", "comparison", Comparison),
    ("all", "all_of", AllOf),
    ("any", "any_of", AnyOf),
    ("not", "negation", Not),
    ("exists", "existence", Exists),
)


def _condition_tag(value: Any) -> str | None:
    """Which kind of condition ``value`` is: by its key in a file, by its class in code."""
    for key, tag, cls in _CONDITION_KINDS:
        if (isinstance(value, dict) and key in value) or isinstance(value, cls):
            return tag
    return None


Condition = Annotated[
    Annotated[Comparison, Tag("comparison")]
    | Annotated[AllOf, Tag("all_of")]
    | Annotated[AnyOf, Tag("any_of")]
    | Annotated[Not, Tag("negation")]
    | Annotated[Exists, Tag("existence")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition_kind",
        custom_error_message="a condition is an object with one of the keys "
        "'var', 'all', 'any', 'not' or 'exists'",
    ),
]


class Branch(Strict):
    """Go to ``goto`` when ``when`` holds; ``goto: null`` ends the workflow."""

    when: Condition
    goto: str | None = Field(description="the step to run next; null ends the workflow")


class Switch(Strict):
    """The first branch whose condition holds wins; otherwise ``default``."""

    branches: list[Branch] = Field(min_length=1)
    default: str | None = Field(
        default=None, description="the step when no branch holds; null ends the workflow"
    )


def _next_tag(value: Any) -> str | None:
    """Whether ``next`` names a step or holds a switch."""
    if isinstance(value, str):
        return "step_name"
    if isinstance(value, dict | Switch):
        return "switch"
    return None


Next = Annotated[
    Annotated[str, Tag("step_name")] | Annotated[Switch, Tag("switch")],
    Discriminator(
        _next_tag,
        custom_error_type="next_kind",
        custom_error_message="next is a step name, a switch object or null",
    ),
]


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


InputName = Annotated[str, StringConstraints(pattern=PARAMETER_NAME_PATTERN)]
InputVar = Annotated[str, StringConstraints(pattern=INPUT_VAR_PATTERN)]


class MapSpec(Strict):
    """Run the step's task once per item of a list, at most ``max_concurrency`` at a time.

    Each item has its own attempts (and retry policy); the step's output is
    ``{"items": [output_0, ...]}`` in item order, with ``null`` for an item that
    failed (its error under ``"errors"``, by index) while the failures stay
    within ``tolerate_failures``.
    """

    over: str = Field(
        pattern=VAR_PATTERN,
        description="the list: params.<name> (a list parameter) or outputs.<step>.<key>...",
    )
    max_concurrency: int = Field(default=1, ge=1, description="items running at the same time")
    tolerate_failures: int = Field(
        default=0, ge=0, description="items that may fail for good without failing the step"
    )


class ParallelSpec(Strict):
    """Run the ``branches`` (task steps of this workflow) at the same time, then join.

    The parallel step's output is ``{branch: output or null}``; each branch's
    output is also stored under the branch's own name.
    """

    branches: list[str] = Field(
        min_length=1, description="task steps whose own 'next' is null; they run only here"
    )
    tolerate_failures: int = Field(
        default=0, ge=0, description="branches that may fail without failing the step"
    )


class RepeatSpec(Strict):
    """Run the step again after each success until ``until`` holds (a bounded loop).

    ``until`` sees the output just made as ``outputs.<this step>``. Reaching
    ``max_iterations`` without it fails the step (error kind ``loop_exhausted``).
    """

    until: Condition
    max_iterations: int = Field(ge=1, le=1000, description="runs of the step at most")


DEFAULT_DISPATCH_TIMEOUT_S = 86_400.0
"""How long a task may wait for a worker unless the step says otherwise: long
enough for any honest queue, short enough that a task lost on its way (an
unroutable publish, a task a worker could not read) is not waited for forever."""


class Step(Strict):
    """One unit of work: a task run by a worker serving ``queue``, or ``parallel`` branches."""

    name: str = Field(pattern=NAME_PATTERN, description="unique within the workflow")
    queue: str | None = Field(
        default=None,
        pattern=QUEUE_NAME_PATTERN.pattern,
        description="the task type; workers serving it run this step (not with 'parallel')",
    )
    parallel: ParallelSpec | None = Field(
        default=None, description="run these branch steps at the same time (instead of a queue)"
    )
    map: MapSpec | None = Field(default=None, description="run the task once per item of a list")
    repeat: RepeatSpec | None = Field(
        default=None, description="run the step again until a condition holds (bounded)"
    )
    input: dict[InputName, InputVar] | None = Field(
        default=None,
        description="the task's inputs, by name: params.<name>, outputs.<step> or "
        "outputs.<step>.<key>...; without it a task gets every earlier output by step name",
    )
    max_output_bytes: int | None = Field(
        default=None, ge=1, description="overrides the workflow's limit for this step's output"
    )
    description: str = ""
    timeout_s: float | None = Field(default=None, gt=0, description="max run time of one attempt")
    heartbeat_s: float | None = Field(
        default=60.0, gt=0, description="an attempt silent this long is lost"
    )
    dispatch_timeout_s: float | None = Field(
        default=DEFAULT_DISPATCH_TIMEOUT_S,
        gt=0,
        description="max wait for a worker to start the task (default a day: a task "
        "lost on its way is found; null: wait for ever)",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    max_crashes: int = Field(default=3, ge=1, description="lost attempts before the job fails")
    next: Next | None = Field(
        default=None, description="the next step, a switch over conditions, or null (the end)"
    )
    on_failure: str | None = Field(
        default=None, description="step to continue with when this step failed for good"
    )


class Workflow(Strict):
    """A named, versioned sequence of steps with typed parameters."""

    name: str = Field(pattern=NAME_PATTERN, description="what clients submit jobs for")
    description: str = ""
    version: str = Field(
        default="1",
        min_length=1,
        max_length=50,
        description="recorded with each job, with the definition's content hash",
    )
    timeout_s: float | None = Field(default=None, gt=0, description="max life time of a job")
    max_output_bytes: int = Field(
        default=DEFAULT_MAX_OUTPUT_BYTES,
        ge=1,
        description="largest step output (compact JSON bytes); pass bigger data by reference",
    )
    parameters: list[Parameter] = Field(
        default_factory=list, description="what a job's params may hold"
    )
    steps: list[Step] = Field(min_length=1, description="the first step is where a job starts")

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

    def output_limit(self, step: Step) -> int:
        """The largest output ``step`` may make, in bytes of compact JSON."""
        return step.max_output_bytes or self.max_output_bytes


class ScheduleSpec(Strict):
    """A recurring job: a job of ``workflow`` with ``params`` each time ``cron`` matches.

    Schedules of the file are stored at the orchestrator's start (see
    :mod:`segue.store.schedules`); ``segue schedules`` lists and pauses them.
    """

    name: str = Field(pattern=NAME_PATTERN, description="unique among schedules")
    workflow: str = Field(description="the workflow each job runs")
    cron: str = Field(
        description="five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'"
    )
    timezone: str = Field(
        default=DEFAULT_TIMEZONE, description="IANA time zone the cron fields are read in"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="the params of each job (checked like a submission's)"
    )
    priority: int = Field(default=5, ge=0, le=MAX_PRIORITY, description="of each job's tasks")
    owner: str | None = Field(
        default=None,
        pattern=OWNER_PATTERN,
        description="RabbitMQ user each job belongs to (may cancel, retry and read it); "
        "none: the jobs are open to every user",
    )
    enabled: bool = Field(
        default=True,
        description="false: stored paused (`segue schedules resume` starts it); applied when "
        "the schedule is new or its definition here changed",
    )

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        check_timezone(value)
        return value


class WorkflowFile(Strict):
    """The whole ``workflow_config.json``."""

    schema_: str | None = Field(
        default=None, alias="$schema", description="where editors find this file's schema"
    )
    format_version: Literal[1] = 1
    workflows: list[Workflow] = Field(min_length=1)
    schedules: list[ScheduleSpec] = Field(
        default_factory=list, description="recurring jobs of these workflows"
    )


AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()
Branch.model_rebuild()
RepeatSpec.model_rebuild()
