"""A corpus of malformed messages for the orchestrator's commands and events queues.

Each :class:`Hostile` message says what the orchestrator must do with it: park
it in the dead-letter queue with a reason containing ``reason`` (compared
case-insensitively), and, when it is a command that names a valid job id
(``answer_job_id``), answer that job's followers with a failed ``job_result``
of kind ``answer_kind``. :func:`build_corpus` builds the corpus around one real
job (for events naming attempts that job does not have).

Messages that still make the orchestrator fail instead (see
``test_poison_messages.py``) are not part of this corpus.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from segue.protocol import kinds

WORKFLOW = "energy_plan"
NESTING = 300
TOO_DEEP = "nested deeper than"
"""The reason for bodies nested beyond the codec's limit (64 levels)."""
"""Deep enough to be hostile, shallow enough for Python's JSON decoder."""
HUGE_CHARS = 50_000
"""A huge value that still fits under the test's message size limit."""


class Target(StrEnum):
    """Which of the orchestrator's queues a message goes to."""

    COMMANDS = "commands"
    EVENTS = "events"


@dataclass(frozen=True)
class Hostile:
    """One malformed message and what the orchestrator must make of it."""

    name: str
    target: Target
    body: bytes
    reason: str
    answer_job_id: UUID | None = None
    answer_kind: str | None = None


def as_json(value: Any) -> bytes:
    """``value`` as a JSON body."""
    return json.dumps(value).encode()


def nested_list(depth: int) -> Any:
    """``[[[...]]]``, ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def nested_object(depth: int) -> Any:
    """``{"a": {"a": ...}}``, ``depth`` levels deep."""
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def build_corpus(real_job_id: UUID, max_bytes: int) -> list[Hostile]:
    """The whole corpus; ``max_bytes`` is the orchestrator's message size limit."""
    corpus = [
        *invalid_json(),
        *not_objects(),
        *not_utf8(),
        *unknown_types(),
        *bad_submissions(),
        *unknown_workflows(),
        *invalid_parameters(),
        *huge_parameters(),
        *oversize(max_bytes),
        *bad_other_commands(),
        *bad_events(),
        *events_of_unknown_jobs(),
        *events_of_unknown_attempts(real_job_id),
    ]
    names = [item.name for item in corpus]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, f"corpus names must be unique: {sorted(duplicates)}"
    return corpus


# --- bodies that are not JSON objects ------------------------------------------------------

INVALID_JSON = (
    b"",
    b"   ",
    b"{",
    b"}",
    b"[1, 2",
    b"not json at all",
    b"{'type': 'submit_job'}",
    b'{"type": "submit_job",}',
    b'{"type": "submit_job"} trailing',
    b'{"a": 1} {"b": 2}',
    b"null null",
    b"\x00\x01\x02",
    b'{"key": undefined}',
    b'{"key": True}',
    b'{"key": 01}',
    b'{"key": "unterminated}',
    b'{"key": "bad escape \\x41"}',
    b'{"key": "raw\ncontrol character"}',
    b'{"type": "submit_job", "job_id": "00000000-0000-4000-8000-000000000000"',
    b'{"key": NaNa}',
    b"<xml>not json</xml>",
    b"--",
)


def invalid_json() -> list[Hostile]:
    """Bodies that are not JSON at all, to both queues."""
    return [
        Hostile(
            f"invalid-json-{target}-{index}", target, body, "not valid JSON", *answer(target, body)
        )
        for target in Target
        for index, body in enumerate(INVALID_JSON)
    ]


NOT_OBJECTS: tuple[Any, ...] = (
    [],
    [1, 2],
    1,
    -1.5,
    "submit_job",
    None,
    True,
    False,
    [{"type": "submit_job"}],
    nested_list(NESTING),
)


def not_objects() -> list[Hostile]:
    """JSON values that are not objects, to both queues."""
    return [
        Hostile(f"not-an-object-{target}-{index}", target, as_json(value), "must be a JSON object")
        for target in Target
        for index, value in enumerate(NOT_OBJECTS)
    ]


def not_utf8() -> list[Hostile]:
    """Bodies that are not UTF-8: stray bytes, Latin-1, truncated sequences."""
    job_id = str(uuid4())
    latin1 = f'{{"type": "submit_job", "job_id": "{job_id}", "workflow": "énergie"}}'
    bodies = {
        "ff": b'{"type": "submit_job", "workflow": "\xff"}',
        "latin1": latin1.encode("latin-1"),
        "invalid-pair": b'{"type": "\xc3\x28"}',
        "continuation": b'{"type": "\xa0\xa1"}',
        "truncated": b'{"type": "submit_job", "workflow": "\xe2\x82"}',
        "overlong": b'{"type": "\xc0\xaf"}',
        "binary": bytes(range(128, 256)),
    }
    return [
        Hostile(f"not-utf8-{target}-{name}", target, body, "not valid JSON", *answer(target, body))
        for target in Target
        for name, body in bodies.items()
    ]


def answer(target: Target, body: bytes) -> tuple[UUID | None, str | None]:
    """Who an undecodable body is answered on: a command that names a job id
    near its start may be a submission, so its submitter hears why it failed.
    """
    found = re.search(rb'"job_id"\s*:\s*"([0-9a-f-]{36})"', body[:4096])
    if target is not Target.COMMANDS or found is None:
        return None, None
    return UUID(found.group(1).decode()), kinds.INVALID_MESSAGE


# --- commands ------------------------------------------------------------------------------


def unknown_types() -> list[Hostile]:
    """Objects without a known ``type``, to both queues."""
    values: dict[str, Any] = {
        "empty": {},
        "no-type": {"workflow": WORKFLOW},
        "unknown": {"type": "launch_rockets"},
        "null": {"type": None},
        "number": {"type": 5},
        "upper-case": {"type": "SUBMIT_JOB"},
        "padded": {"type": "submit_job "},
        "blank": {"type": ""},
        "nested-object": nested_object(NESTING),
    }
    items = [
        Hostile(
            f"unknown-type-{target}-{name}",
            target,
            as_json(value),
            TOO_DEEP if name == "nested-object" else "type",
        )
        for target in Target
        for name, value in values.items()
    ]
    items.append(
        Hostile(
            "event-type-as-command",
            Target.COMMANDS,
            as_json({"type": "step_succeeded", "job_id": None, "attempt_id": str(uuid4())}),
            "step_succeeded",
        )
    )
    items.append(
        Hostile(
            "command-type-as-event",
            Target.EVENTS,
            as_json({"type": "submit_job", "job_id": str(uuid4()), "workflow": WORKFLOW}),
            "submit_job",
        )
    )
    return items


def submission(job_id: UUID | str | None, **fields: Any) -> dict[str, Any]:
    """A submission body; ``fields`` override or add fields, None values stay as null."""
    body: dict[str, Any] = {"type": "submit_job", "workflow": WORKFLOW, "params": {}}
    if job_id is not None:
        body["job_id"] = str(job_id)
    body.update(fields)
    return body


BAD_SUBMISSION_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "workflow-missing": ({"workflow": ...}, "workflow"),
    "workflow-null": ({"workflow": None}, "workflow"),
    "workflow-number": ({"workflow": 5}, "workflow"),
    "workflow-empty": ({"workflow": ""}, "workflow"),
    "workflow-too-long": ({"workflow": "w" * 201}, "workflow"),
    "workflow-list": ({"workflow": [WORKFLOW]}, "workflow"),
    "params-list": ({"params": [1, 2]}, "params"),
    "params-string": ({"params": "region=nl"}, "params"),
    "params-number": ({"params": 5}, "params"),
    "params-null": ({"params": None}, "params"),
    "priority-negative": ({"priority": -1}, "priority"),
    "priority-too-high": ({"priority": 10}, "priority"),
    "priority-string": ({"priority": "high"}, "priority"),
    "priority-fraction": ({"priority": 1.5}, "priority"),
    "priority-huge": ({"priority": 10**30}, "priority"),
    "reference-number": ({"reference": 5}, "reference"),
    "reference-too-long": ({"reference": "r" * 501}, "reference"),
    "reference-object": ({"reference": {"a": 1}}, "reference"),
    "schema-version-string": ({"schema_version": "one"}, "schema_version"),
    "unknown-field": ({"colour": "blue"}, "colour"),
    "nested-unknown-field": ({"colour": nested_object(NESTING)}, TOO_DEEP),
}


def bad_submissions() -> list[Hostile]:
    """Submissions with missing, mistyped or unknown fields.

    Those naming a valid job id are answered as ``invalid_message``.
    """
    items = []
    for name, (fields, reason) in BAD_SUBMISSION_FIELDS.items():
        job_id = uuid4()
        body = submission(job_id, **fields)
        body = {key: value for key, value in body.items() if value is not ...}
        items.append(
            Hostile(
                f"submission-{name}",
                Target.COMMANDS,
                as_json(body),
                reason,
                job_id,
                kinds.INVALID_MESSAGE,
            )
        )
    bad_ids: dict[str, Any] = {
        "missing": None,
        "not-a-uuid": "not-a-uuid",
        "number": 12345,
        "empty": "",
        "list": [str(uuid4())],
        "truncated": str(uuid4())[:-4],
    }
    for name, value in bad_ids.items():
        body = submission(None)
        if value is not None:
            body["job_id"] = value
        items.append(Hostile(f"submission-job-id-{name}", Target.COMMANDS, as_json(body), "job_id"))
    return items


UNKNOWN_WORKFLOWS = ("nope", "ENERGY_PLAN", "energy_plan ", "../etc/passwd", "quick_check")


def unknown_workflows() -> list[Hostile]:
    """Well-formed submissions of workflows the orchestrator does not run."""
    items = []
    for index, workflow in enumerate(UNKNOWN_WORKFLOWS):
        job_id = uuid4()
        items.append(
            Hostile(
                f"unknown-workflow-{index}",
                Target.COMMANDS,
                as_json(submission(job_id, workflow=workflow)),
                "unknown workflow",
                job_id,
                kinds.UNKNOWN_WORKFLOW,
            )
        )
    return items


INVALID_PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "region-unknown": ({"region": "fr"}, "params.region"),
    "region-number": ({"region": 5}, "params.region"),
    "region-nested": ({"region": nested_list(NESTING)}, TOO_DEEP),
    "horizon-zero": ({"horizon_years": 0}, "params.horizon_years"),
    "horizon-too-long": ({"horizon_years": 51}, "params.horizon_years"),
    "horizon-word": ({"horizon_years": "ten"}, "params.horizon_years"),
    "horizon-fraction": ({"horizon_years": 2.5}, "params.horizon_years"),
    "horizon-null": ({"horizon_years": None}, "params.horizon_years"),
    "horizon-huge": ({"horizon_years": 10**40}, "params.horizon_years"),
    "simulate-string": ({"simulate": "yes"}, "params.simulate"),
    "simulate-number": ({"simulate": 1}, "params.simulate"),
    "co2-negative": ({"co2_price_eur": -1}, "params.co2_price_eur"),
    "co2-word": ({"co2_price_eur": "cheap"}, "params.co2_price_eur"),
    "step-seconds-too-long": ({"step_seconds": 4000}, "params.step_seconds"),
    "step-seconds-negative": ({"step_seconds": -1}, "params.step_seconds"),
    "fail-at-unknown": ({"fail_at": "nowhere"}, "params.fail_at"),
    "unknown-parameter": ({"colour": "blue"}, "params.colour"),
    "empty-name": ({"": 1}, "unknown parameter"),
    "nul-in-name": ({"a\u0000b": 1}, "NUL character"),
    "nested-unknown": ({"nested": nested_object(NESTING)}, TOO_DEEP),
    "several": ({"region": "fr", "horizon_years": 0, "x": 1}, "params.horizon_years"),
}


def invalid_parameters() -> list[Hostile]:
    """Submissions whose params break the workflow's parameter specification."""
    items = []
    for name, (params, reason) in INVALID_PARAMETERS.items():
        job_id = uuid4()
        # Values no database accepts are refused by the codec, before the parameter check.
        refused_by_codec = reason in (TOO_DEEP, "NUL character")
        items.append(
            Hostile(
                f"invalid-parameters-{name}",
                Target.COMMANDS,
                as_json(submission(job_id, params=params)),
                reason,
                job_id,
                kinds.INVALID_MESSAGE if refused_by_codec else kinds.INVALID_PARAMETERS,
            )
        )
    return items


def huge_parameters() -> list[Hostile]:
    """Submissions with huge params that still fit under the message size limit."""
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "long-string": ({"region": "x" * HUGE_CHARS}, "params.region"),
        "long-unknown-value": ({"blob": "b" * HUGE_CHARS}, "params.blob"),
        "many-unknown-names": ({f"p{i}": i for i in range(3000)}, "params.p0: unknown"),
        "long-list": ({"horizon_years": list(range(8000))}, "params.horizon_years"),
        "long-name": ({"n" * 20_000: 1}, "params.nnnn"),
    }
    items = []
    for name, (params, reason) in cases.items():
        job_id = uuid4()
        items.append(
            Hostile(
                f"huge-parameters-{name}",
                Target.COMMANDS,
                as_json(submission(job_id, params=params)),
                reason,
                job_id,
                kinds.INVALID_PARAMETERS,
            )
        )
    return items


def oversize(max_bytes: int) -> list[Hostile]:
    """Bodies larger than the limit; a job id near the start is still answered."""
    blob = "z" * (max_bytes + 1024)
    first_id, last_id = uuid4(), uuid4()
    id_first = as_json({"job_id": str(first_id), **submission(None, params={"blob": blob})})
    id_last = as_json({**submission(None, params={"blob": blob}), "job_id": str(last_id)})
    event = {"type": "step_progress", "job_id": str(uuid4()), "attempt_id": str(uuid4())}
    return [
        Hostile(
            "oversize-submission-id-first",
            Target.COMMANDS,
            id_first,
            "exceeds the limit",
            first_id,
            kinds.INVALID_MESSAGE,
        ),
        Hostile("oversize-submission-id-last", Target.COMMANDS, id_last, "exceeds the limit"),
        Hostile(
            "oversize-garbage", Target.COMMANDS, b"\xff" * (max_bytes * 3), "exceeds the limit"
        ),
        Hostile("oversize-spaces", Target.COMMANDS, b" " * (max_bytes + 1), "exceeds the limit"),
        Hostile(
            "oversize-event",
            Target.EVENTS,
            as_json({**event, "message": blob}),
            "exceeds the limit",
        ),
        Hostile(
            "oversize-event-garbage", Target.EVENTS, b"{" * (max_bytes + 1), "exceeds the limit"
        ),
    ]


def bad_other_commands() -> list[Hostile]:
    """Cancels and queries that cannot be served.

    They are dead-lettered but not answered with a job result: only a (possible)
    submission is, so a malformed cancel can never make a job look failed.
    """
    unanswered: dict[str, tuple[dict[str, Any], str]] = {
        "cancel-reason-number": ({"type": "cancel_job", "reason": 5}, "reason"),
        "cancel-reason-too-long": ({"type": "cancel_job", "reason": "r" * 1001}, "reason"),
        "get-job-history-word": (
            {"type": "get_job", "include_history": "maybe"},
            "include_history",
        ),
        "cancel-extra-field": ({"type": "cancel_job", "force": True}, "force"),
    }
    items = []
    for name, (body, reason) in unanswered.items():
        job_id = uuid4()
        items.append(
            Hostile(name, Target.COMMANDS, as_json({**body, "job_id": str(job_id)}), reason)
        )
    parked: dict[str, tuple[dict[str, Any], str]] = {
        "cancel-job-id-missing": ({"type": "cancel_job"}, "job_id"),
        "cancel-job-id-bad": ({"type": "cancel_job", "job_id": "abc"}, "job_id"),
        "get-job-no-reply-to-1": ({"type": "get_job", "job_id": str(uuid4())}, "reply_to"),
        "get-job-no-reply-to-2": (
            {"type": "get_job", "job_id": str(uuid4()), "include_history": False},
            "reply_to",
        ),
        "list-workflows-no-reply-to-1": ({"type": "list_workflows"}, "reply_to"),
        "list-workflows-no-reply-to-2": (
            {"type": "list_workflows", "schema_version": 1},
            "reply_to",
        ),
        "list-workflows-extra": ({"type": "list_workflows", "filter": "energy"}, "filter"),
    }
    items += [
        Hostile(name, Target.COMMANDS, as_json(body), reason)
        for name, (body, reason) in parked.items()
    ]
    return items


# --- events --------------------------------------------------------------------------------


def event(kind: str, job_id: UUID | None = None, attempt_id: UUID | None = None) -> dict[str, Any]:
    """A well-formed worker event of ``kind`` (fresh ids unless given)."""
    body: dict[str, Any] = {
        "type": kind,
        "job_id": str(job_id or uuid4()),
        "attempt_id": str(attempt_id or uuid4()),
        "worker_id": "hostile-worker",
    }
    match kind:
        case "step_progress":
            body.update(fraction=0.5, message="half way")
        case "step_succeeded":
            body.update(output={"answer": 42})
        case "step_failed":
            body.update(error={"kind": "HostileError", "message": "it broke"})
    return body


EVENT_KINDS = ("step_started", "step_progress", "step_heartbeat", "step_succeeded", "step_failed")

BAD_EVENT_FIELDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "job-id-missing": ("step_started", {"job_id": ...}, "job_id"),
    "attempt-id-missing": ("step_heartbeat", {"attempt_id": ...}, "attempt_id"),
    "attempt-id-bad": ("step_started", {"attempt_id": "attempt-1"}, "attempt_id"),
    "job-id-number": ("step_started", {"job_id": 5}, "job_id"),
    "fraction-above-one": ("step_progress", {"fraction": 1.5}, "fraction"),
    "fraction-negative": ("step_progress", {"fraction": -0.1}, "fraction"),
    "fraction-word": ("step_progress", {"fraction": "half"}, "fraction"),
    "fraction-null": ("step_progress", {"fraction": None}, "fraction"),
    "fraction-missing": ("step_progress", {"fraction": ...}, "fraction"),
    "message-too-long": ("step_progress", {"message": "m" * 2001}, "message"),
    "output-list": ("step_succeeded", {"output": [1, 2]}, "output"),
    "output-string": ("step_succeeded", {"output": "done"}, "output"),
    "error-missing": ("step_failed", {"error": ...}, "error"),
    "error-kind-missing": ("step_failed", {"error": {"message": "x"}}, "error.kind"),
    "error-string": ("step_failed", {"error": "it broke"}, "error"),
    "retryable-word": ("step_failed", {"retryable": "maybe"}, "retryable"),
    "redelivered-word": ("step_started", {"redelivered": "perhaps"}, "redelivered"),
    "worker-id-too-long": ("step_heartbeat", {"worker_id": "w" * 201}, "worker_id"),
    "sent-at-word": ("step_heartbeat", {"sent_at": "yesterday"}, "sent_at"),
    "schema-version-word": ("step_heartbeat", {"schema_version": "v1"}, "schema_version"),
    "unknown-field": ("step_succeeded", {"colour": "blue"}, "colour"),
}


def bad_events() -> list[Hostile]:
    """Worker events with missing, mistyped or unknown fields."""
    items = []
    for name, (kind, fields, reason) in BAD_EVENT_FIELDS.items():
        body = {**event(kind), **fields}
        body = {key: value for key, value in body.items() if value is not ...}
        items.append(Hostile(f"event-{name}", Target.EVENTS, as_json(body), reason))
    return items


def events_of_unknown_jobs() -> list[Hostile]:
    """Well-formed events of jobs that do not exist (two of each kind)."""
    return [
        Hostile(f"unknown-job-{kind}-{n}", Target.EVENTS, as_json(event(kind)), "unknown job")
        for kind in EVENT_KINDS
        for n in range(2)
    ]


def events_of_unknown_attempts(job_id: UUID) -> list[Hostile]:
    """Well-formed events of a real job naming attempts it never had (two of each kind)."""
    return [
        Hostile(
            f"unknown-attempt-{kind}-{n}",
            Target.EVENTS,
            as_json(event(kind, job_id=job_id)),
            "unknown attempt",
        )
        for kind in EVENT_KINDS
        for n in range(2)
    ]
