"""Declaring handlers and checking what they return, without a broker."""

from __future__ import annotations

import math
from typing import Any

import pytest

from segue.worker import InvalidOutputError, StepContext, StepHandler, Worker, step_handler
from segue.worker.handler import validate_output


@step_handler("simulate")
async def async_step(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


@step_handler("report")
def blocking_step(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


class AsyncCallable:
    async def __call__(self, ctx: StepContext) -> None:
        return None


def test_decorator_makes_a_handler_for_the_queue() -> None:
    assert isinstance(async_step, StepHandler)
    assert async_step.queue == "simulate"
    assert async_step.is_async
    assert blocking_step.queue == "report"
    assert not blocking_step.is_async
    assert blocking_step.name.endswith("blocking_step")


def test_direct_form_and_async_callable_objects() -> None:
    handler = step_handler("optimise", AsyncCallable())
    assert handler.queue == "optimise"
    assert handler.is_async


@pytest.mark.parametrize("queue", ["", "has space", "a/b", "x" * 101])
def test_invalid_queue_names_are_refused(queue: str) -> None:
    with pytest.raises(ValueError, match="queue"):
        step_handler(queue, lambda ctx: None)


def test_a_handler_must_be_callable() -> None:
    with pytest.raises(TypeError, match="not callable"):
        StepHandler("simulate", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}),
        ({"t": (1, 2)}, {"t": [1, 2]}),
        ({1: "x"}, {"1": "x"}),
    ],
)
def test_valid_outputs_become_plain_json(value: object, expected: dict[str, Any]) -> None:
    assert validate_output(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "list"),
        ("text", "str"),
        (42, "int"),
        ({"s": {1, 2}}, "not JSON-serialisable"),
        ({"x": math.nan}, "not JSON-serialisable"),
        ({"o": object()}, "not JSON-serialisable"),
    ],
)
def test_invalid_outputs_are_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(InvalidOutputError, match=message):
        validate_output(value)


def test_oversized_outputs_are_refused() -> None:
    with pytest.raises(InvalidOutputError, match="bytes of JSON"):
        validate_output({"blob": "x" * 200}, max_bytes=100)


async def test_a_coroutine_returned_by_a_plain_function_is_refused() -> None:
    async def forgot_async() -> None:
        return None

    with pytest.raises(InvalidOutputError, match="async def"):
        validate_output(forgot_async())


def test_worker_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="at least one handler"):
        Worker([])
    with pytest.raises(ValueError, match="two handlers"):
        Worker([async_step, step_handler("simulate", lambda ctx: None)])
    with pytest.raises(TypeError, match="step_handler"):
        Worker([lambda ctx: None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="concurrency"):
        Worker([async_step], concurrency=0)
    with pytest.raises(ValueError, match="heartbeat"):
        Worker([async_step], heartbeat_interval_s=0)


def test_worker_id_defaults_to_host_and_pid() -> None:
    worker = Worker([async_step, blocking_step])
    host, _, pid = worker.worker_id.rpartition(":")
    assert host
    assert pid.isdigit()
    assert Worker([async_step], worker_id="w1").worker_id == "w1"
