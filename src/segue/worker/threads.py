"""Running a blocking handler off the event loop.

Each call gets its own daemon thread rather than a pooled one: the worker's
slots already bound how many run at once, and a handler that ignores
cancellation must not keep the process alive after shutdown (executor threads
are joined at interpreter exit; daemon threads are not).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_in_thread(fn: Callable[[], T], name: str) -> T:
    """Run ``fn`` in a new daemon thread and await its result or exception.

    Cancelling the caller stops waiting but cannot stop the thread: the
    function has to notice by itself (e.g. through ``ctx.cancelled``).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = context.run(fn)
        except BaseException as exc:  # handed to the awaiting coroutine, not swallowed
            error = exc
            _call_soon(loop, lambda: settle(lambda: future.set_exception(error)))
        else:
            _call_soon(loop, lambda: settle(lambda: future.set_result(result)))

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the loop is closed: nobody waits for this result any more
        return
