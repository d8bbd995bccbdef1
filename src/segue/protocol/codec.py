"""Bytes <-> message models, with precise, user-facing errors for bad input."""

from __future__ import annotations

import json
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

DEFAULT_MAX_BODY_BYTES = 1_000_000

T = TypeVar("T")

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
UPDATE_ADAPTER: TypeAdapter[Update] = TypeAdapter(Update)
REPLY_ADAPTER: TypeAdapter[Reply] = TypeAdapter(Reply)
TASK_ADAPTER: TypeAdapter[StepTask] = TypeAdapter(StepTask)


class InvalidMessageError(SegueError):
    """A message body could not be decoded; ``reason`` says why, precisely.

    ``job_id`` is set when the body named a valid job id, so the sender can be
    answered even though the message itself is unusable.
    """

    def __init__(self, reason: str, job_id: UUID | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id


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
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessageError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidMessageError(f"body must be a JSON object, got {type(raw).__name__}")
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        raise InvalidMessageError(describe_validation_error(exc), _job_id_of(raw)) from exc


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
