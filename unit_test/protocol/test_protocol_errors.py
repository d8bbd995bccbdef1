"""Error texts are bounded once, where an ErrorInfo is decoded or built: cut, never refused."""

from __future__ import annotations

import json
from uuid import uuid4

from segue.protocol.codec import EVENT_ADAPTER, decode
from segue.protocol.messages import (
    MAX_ERROR_DETAILS_CHARS,
    MAX_ERROR_KIND_CHARS,
    MAX_ERROR_MESSAGE_CHARS,
    ErrorInfo,
    StepFailed,
)

TRACEBACK = "Traceback (most recent call last):\n" + '  File "x.py", line 1\n' * 10_000


def failure_body(error: dict[str, object]) -> bytes:
    """A worker's ``step_failed`` body carrying ``error``, as JSON."""
    return json.dumps(
        {"type": "step_failed", "job_id": str(uuid4()), "attempt_id": str(uuid4()), "error": error}
    ).encode()


def test_a_result_with_huge_error_texts_is_decoded_with_them_cut() -> None:
    body = failure_body(
        {
            "kind": "K" * 1000,
            "message": "the reason " + "m" * 100_000,
            "step": "s" * 1000,
            "details": TRACEBACK + "ValueError: the end\n",
        }
    )

    event = decode(EVENT_ADAPTER, body)

    assert isinstance(event, StepFailed)
    error = event.error
    assert len(error.kind) <= MAX_ERROR_KIND_CHARS
    assert error.kind.startswith("KKK")
    assert error.kind.endswith("more characters)")
    assert len(error.message) <= MAX_ERROR_MESSAGE_CHARS
    assert error.message.startswith("the reason mmm")
    assert error.step is not None
    assert len(error.step) <= MAX_ERROR_KIND_CHARS
    assert error.details is not None
    assert len(error.details) <= MAX_ERROR_DETAILS_CHARS
    assert error.details.endswith("ValueError: the end\n")
    assert "earlier characters" in error.details


def test_short_error_texts_are_kept_as_they_are() -> None:
    error = ErrorInfo(kind="ValueError", message="bad", step="a", details="line\n")
    assert (error.kind, error.message, error.step, error.details) == (
        "ValueError",
        "bad",
        "a",
        "line\n",
    )


def test_a_cut_error_reads_back_unchanged() -> None:
    """Stored and read back (validated again), a cut error is the same error."""
    error = ErrorInfo(kind="K" * 500, message="m" * 10_000, details="d" * 50_000)
    again = ErrorInfo.model_validate_json(error.model_dump_json())
    assert again == error


def test_an_error_built_in_code_is_bounded_too() -> None:
    """The worker SDK builds its errors with the model: bounded before they are sent."""
    error = ErrorInfo(kind="E", message="x" * (MAX_ERROR_MESSAGE_CHARS + 1))
    assert len(error.message) <= MAX_ERROR_MESSAGE_CHARS
    assert error.message.endswith("more characters)")
