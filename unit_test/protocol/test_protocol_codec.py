"""The codec turns any bytes into a message or a precise, user-facing reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segue.protocol.codec import (
    COMMAND_ADAPTER,
    EVENT_ADAPTER,
    InvalidMessageError,
    decode,
    encode,
)
from segue.protocol.messages import CancelJob, ErrorInfo, StepFailed, SubmitJob


def test_round_trip_of_a_submission() -> None:
    submit = SubmitJob(job_id=uuid4(), workflow="energy_plan", params={"a": 1}, priority=7)
    assert decode(COMMAND_ADAPTER, encode(submit)) == submit


def test_round_trip_of_a_worker_event() -> None:
    failed = StepFailed(
        job_id=uuid4(), attempt_id=uuid4(), error=ErrorInfo(kind="ValueError", message="bad")
    )
    assert decode(EVENT_ADAPTER, encode(failed)) == failed


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object, got list"),
        (b'{"type": "launch_rocket"}', "type"),
        (b'{"type": "cancel_job"}', "job_id: Field required"),
        (b'{"type": "cancel_job", "job_id": "nope"}', "job_id"),
        (
            json.dumps({"type": "cancel_job", "job_id": str(uuid4()), "extra": 1}).encode(),
            "extra: Extra inputs are not permitted",
        ),
    ],
)
def test_invalid_bodies_are_refused_with_a_precise_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessageError) as refused:
        decode(COMMAND_ADAPTER, body)
    assert reason in refused.value.reason


def test_an_invalid_submission_that_names_a_job_id_keeps_it_for_the_answer() -> None:
    job_id = uuid4()
    body = json.dumps({"type": "submit_job", "job_id": str(job_id), "priority": 99}).encode()
    with pytest.raises(InvalidMessageError) as refused:
        decode(COMMAND_ADAPTER, body)
    assert refused.value.job_id == job_id
    assert "priority" in refused.value.reason
    assert "workflow" in refused.value.reason


def test_an_oversize_body_is_refused_before_parsing_and_keeps_its_job_id() -> None:
    job_id = uuid4()
    body = json.dumps(
        {"type": "submit_job", "job_id": str(job_id), "workflow": "w", "params": {"x": "y" * 5000}}
    ).encode()
    with pytest.raises(InvalidMessageError, match="exceeds the limit of 1024 bytes") as refused:
        decode(COMMAND_ADAPTER, body, max_bytes=1024)
    assert refused.value.job_id == job_id


@given(st.binary(max_size=300))
def test_decoding_arbitrary_bytes_never_raises_anything_else(body: bytes) -> None:
    assert _refusal(lambda: decode(COMMAND_ADAPTER, body)) != ""


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_decoding_arbitrary_json_never_raises_anything_else(value: object) -> None:
    assert _refusal(lambda: decode(EVENT_ADAPTER, json.dumps(value).encode())) != ""


def _refusal(action: Callable[[], object]) -> str | None:
    """None if ``action`` decoded a message, else the refusal's reason."""
    try:
        action()
    except InvalidMessageError as exc:
        return exc.reason
    return None


def test_cancel_has_a_default_reason() -> None:
    assert CancelJob(job_id=uuid4()).reason == "cancelled by client"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"type": "cancel_job", "x": NaN}', "NaN is not a JSON number"),
        (b'{"type": "cancel_job", "x": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"type": "cancel_job", "x": 1e400}', "number 1e400 is out of range"),
        (b'{"type": "cancel_job", "x": "a\\u0000b"}', "NUL character"),
        (b'{"type": "cancel_job", "x": {"\\ud800": 1}}', "lone UTF-16 surrogate"),
        (b'{"x": ' + b'{"y": ' * 70 + b"1" + b"}" * 70 + b"}", "nested deeper than 64 levels"),
    ],
)
def test_values_no_database_or_encoder_accepts_are_refused_up_front(
    body: bytes, reason: str
) -> None:
    with pytest.raises(InvalidMessageError) as refused:
        decode(COMMAND_ADAPTER, body)
    assert reason in refused.value.reason


def test_the_type_of_an_invalid_message_is_kept() -> None:
    with pytest.raises(InvalidMessageError) as refused:
        decode(COMMAND_ADAPTER, b'{"type": "cancel_job", "job_id": "nope"}')
    assert refused.value.message_type == "cancel_job"
