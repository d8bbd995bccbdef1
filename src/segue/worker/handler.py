"""Step handlers: the user's function for one task queue, and what it may return."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from segue.protocol.codec import DEFAULT_MAX_BODY_BYTES, unstorable
from segue.protocol.messages import JsonObject
from segue.protocol.names import QUEUE_NAME_PATTERN
from segue.worker.errors import InvalidOutputError

if TYPE_CHECKING:
    from segue.worker.context import StepContext

StepFunction = Callable[["StepContext"], Any]
"""``async def f(ctx) -> dict | None`` or ``def f(ctx) -> dict | None``."""

OUTPUT_ENVELOPE_BYTES = 16_000
"""Room left in an event body for everything but the output."""

MAX_OUTPUT_BYTES = DEFAULT_MAX_BODY_BYTES - OUTPUT_ENVELOPE_BYTES
"""Largest JSON output a step may return: the orchestrator refuses bigger event bodies."""


@dataclass(frozen=True)
class StepHandler:
    """A function serving the tasks of one step queue.

    ``fn`` takes a :class:`~segue.worker.context.StepContext` and returns a dict
    (the step output) or None. A coroutine function runs on the event loop; a
    plain function runs in its own thread, so heartbeats keep flowing while it
    blocks.
    """

    queue: str
    fn: StepFunction

    def __post_init__(self) -> None:
        if not QUEUE_NAME_PATTERN.match(self.queue):
            raise ValueError(f"queue {self.queue!r} must match {QUEUE_NAME_PATTERN.pattern}")
        if not callable(self.fn):
            raise TypeError(f"handler for queue {self.queue!r} is not callable: {self.fn!r}")

    @property
    def is_async(self) -> bool:
        """Whether ``fn`` is a coroutine function (run on the loop, not in a thread)."""
        return inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            type(self.fn).__call__  # an object whose __call__ is async
        )

    @property
    def name(self) -> str:
        """The function's qualified name, for logs."""
        return str(getattr(self.fn, "__qualname__", repr(self.fn)))


@overload
def step_handler(queue: str) -> Callable[[StepFunction], StepHandler]: ...


@overload
def step_handler(queue: str, fn: StepFunction) -> StepHandler: ...


def step_handler(
    queue: str, fn: StepFunction | None = None
) -> StepHandler | Callable[[StepFunction], StepHandler]:
    """Declare the handler of step queue ``queue``.

    Use as a decorator (``@step_handler("simulate")``) or directly
    (``step_handler("simulate", simulate)``); either way the result is a
    :class:`StepHandler` to list in ``Worker(handlers=[...])``.
    """
    if fn is not None:
        return StepHandler(queue, fn)

    def decorate(function: StepFunction) -> StepHandler:
        return StepHandler(queue, function)

    return decorate


def validate_output(value: object, max_bytes: int = MAX_OUTPUT_BYTES) -> JsonObject:
    """The step output a handler's return value stands for, as plain JSON data.

    None means ``{}``. Anything but a JSON-serialisable dict, or one larger
    than ``max_bytes`` once encoded, raises :class:`InvalidOutputError`. The
    result is what the orchestrator will see (tuples become lists, keys strings).
    """
    if value is None:
        return {}
    if inspect.iscoroutine(value):
        value.close()
        raise InvalidOutputError(
            "handler returned a coroutine: declare it with `async def` so the worker awaits it"
        )
    if not isinstance(value, dict):
        raise InvalidOutputError(
            f"handler returned {type(value).__name__}; a step output must be a dict or None"
        )
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidOutputError(f"step output is not JSON-serialisable: {exc}") from exc
    problem = unstorable(value)
    if problem is not None:
        raise InvalidOutputError(problem.replace("body", "step output", 1))
    size = len(text.encode())
    if size > max_bytes:
        raise InvalidOutputError(
            f"step output is {size} bytes of JSON, more than the limit of {max_bytes}; "
            "store large results elsewhere and return a reference"
        )
    output: JsonObject = json.loads(text)
    return output
