"""Running a worker as a process: ``segue worker run MODULE:ATTR``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import signal

from segue.errors import ConfigurationError
from segue.logs import library_logger
from segue.worker.app import Worker


def load_worker(target: str) -> Worker:
    """The worker named by ``MODULE:ATTR``.

    ``ATTR`` (dotted paths allowed) is a :class:`Worker`, or a callable taking
    no arguments that returns one. Raises :class:`ConfigurationError` saying
    what is wrong with ``target``.
    """
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigurationError(f"worker target {target!r} must look like MODULE:ATTR")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigurationError(f"{target!r}: no attribute {part!r}") from exc
    if isinstance(obj, Worker):
        return obj
    if not callable(obj):
        raise ConfigurationError(f"{target!r} is neither a Worker nor a factory returning one")
    try:
        inspect.signature(obj).bind()
    except TypeError as exc:
        raise ConfigurationError(f"{target!r} must be callable without arguments: {exc}") from exc
    except ValueError:  # no signature (a builtin): just try it
        pass
    made = obj()
    if not isinstance(made, Worker):
        raise ConfigurationError(f"{target!r}() returned {type(made).__name__}, not a Worker")
    return made


def run_worker(target: str) -> None:
    """Load the worker named by ``target`` and run it until SIGTERM or SIGINT.

    The first signal stops it gracefully (running steps may finish within the
    worker's grace period); a second one cancels them at once.
    """
    asyncio.run(serve(load_worker(target)))


async def serve(worker: Worker) -> None:
    """Run ``worker`` with SIGTERM/SIGINT handlers installed for the duration."""
    loop = asyncio.get_running_loop()
    log = library_logger("segue.worker")

    def on_signal(signum: signal.Signals) -> None:
        log.info("worker_signal", signal=signum.name, now=worker.stopping)
        worker.stop(now=worker.stopping)

    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await worker.run()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
