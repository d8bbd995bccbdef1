"""Bytes <-> message models, with precise, user-facing errors for bad input."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, TypeAdapter, ValidationError

from segue.errors import SegueError
from segue.protocol.messages import (
    Command,
    Event,
    Reply,
    StepTask,
    Update,
)
from segue.protocol.names import UPDATES_KEY_PATTERN

DEFAULT_MAX_BODY_BYTES = 1_000_000
MAX_DEPTH = 64
"""Deepest nesting of JSON a message may have."""

T = TypeVar("T")

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
UPDATE_ADAPTER: TypeAdapter[Update] = TypeAdapter(Update)
REPLY_ADAPTER: TypeAdapter[Reply] = TypeAdapter(Reply)
TASK_ADAPTER: TypeAdapter[StepTask] = TypeAdapter(StepTask)


class InvalidMessageError(SegueError):
    """A message body could not be decoded; ``reason`` says why, precisely.

    ``job_id`` is set when the body named a valid job id, so the sender can be
    answered even though the message itself is unusable (on its ``updates_key``
    too, when it gave a valid one); ``message_type`` is the body's ``type``
    when it could be read.
    """

    def __init__(
        self,
        reason: str,
        job_id: UUID | None = None,
        message_type: str | None = None,
        updates_key: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
        self.message_type = message_type
        self.updates_key = updates_key


def encode(message: BaseModel) -> bytes:
    """Serialise a message model to its JSON body."""
    return message.model_dump_json().encode()


def decode(adapter: TypeAdapter[T], body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> T:
    """Decode ``body`` with ``adapter`` or raise :class:`InvalidMessageError`."""
    if len(body) > max_bytes:
        raise InvalidMessageError(
            f"body of {len(body)} bytes exceeds the limit of {max_bytes} bytes",
            _sniff_job_id(body[:4096]),
        )
    try:
        raw = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise InvalidMessageError(
            "body is not valid JSON: nested too deeply", _sniff_job_id(body[:4096])
        ) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, refused numbers
        raise InvalidMessageError(
            f"body is not valid JSON: {exc}", _sniff_job_id(body[:4096])
        ) from exc
    if not isinstance(raw, dict):
        raise InvalidMessageError(f"body must be a JSON object, got {type(raw).__name__}")
    message_type = raw.get("type") if isinstance(raw.get("type"), str) else None
    problem = unstorable(raw)
    if problem is not None:
        raise InvalidMessageError(problem, _job_id_of(raw), message_type, _updates_key_of(raw))
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        reason = describe_validation_error(exc)
        raise InvalidMessageError(
            reason, _job_id_of(raw), message_type, _updates_key_of(raw)
        ) from exc


def unstorable(value: object, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a decoded JSON value cannot be stored or sent on, or None if it can.

    PostgreSQL's JSON types refuse NUL characters, and UTF-8 cannot encode
    lone surrogates (``"\\ud800"``); deeply nested values exhaust recursion in
    every library that walks them. Checked without recursion.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"body is nested deeper than {max_depth} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return "body contains a NUL character (\\u0000), which cannot be stored"
            if not item.isascii() and _has_surrogate(item):
                return "body contains a lone UTF-16 surrogate, which is not valid Unicode text"
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``location: reason``."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def _job_id_of(raw: dict[str, Any]) -> UUID | None:
    value = raw.get("job_id")
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _updates_key_of(raw: dict[str, Any]) -> str | None:
    value = raw.get("updates_key")
    if isinstance(value, str) and UPDATES_KEY_PATTERN.match(value):
        return value
    return None


def _sniff_job_id(prefix: bytes) -> UUID | None:
    """Find a job id in the head of an oversize body without parsing all of it."""
    marker = b'"job_id"'
    start = prefix.find(marker)
    if start < 0:
        return None
    rest = prefix[start + len(marker) :].lstrip(b" \t\r\n:").lstrip()
    if not rest.startswith(b'"'):
        return None
    try:
        return UUID(rest[1:37].decode())
    except (UnicodeDecodeError, ValueError):
        return None
