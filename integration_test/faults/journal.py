"""The fault-injection workers' journal: which handler ran which attempt, where and when.

The orchestrator's database says what it decided; only the workers can say
what actually ran. The suite's workers are the demo worker with every handler
wrapped to append a line to a file of their own when it starts and when it
ends (``completed``, ``failed`` or ``stopped``). The audit reads the files back
as :class:`Run` records: a run may be stopped early by a cancel, or end with no
``end`` line because the test killed its worker.

Run the worker as ``segue worker run integration_test.faults.journal:worker``
with the repository root on ``PYTHONPATH`` and ``SEGUE_FAULT_JOURNAL`` naming a
directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from segue.demo import concurrency_from_env, demo_handlers
from segue.worker import StepContext, StepHandler, Worker

JOURNAL_ENV = "SEGUE_FAULT_JOURNAL"


class Outcome(StrEnum):
    """How a handler run ended."""

    COMPLETED = "completed"
    """The handler returned and the attempt was not cancelled: it did the work."""
    FAILED = "failed"
    """The handler raised on its own (a demo failure): it ran to its end too."""
    STOPPED = "stopped"
    """The attempt was cancelled while it ran (a stop from the orchestrator)."""


class Journal:
    """Appends one JSON line per handler start and end to ``directory/<worker id>.jsonl``.

    Each line is a single ``write`` on a file opened for appending, so lines
    of concurrent handlers (some run in threads) never interleave, and a
    SIGKILL leaves at most the last line cut short.
    """

    def __init__(self, directory: Path, worker_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = worker_id.replace(":", "-").replace("/", "-")
        self._fd = os.open(directory / f"{name}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._worker_id = worker_id

    def started(self, ctx: StepContext) -> None:
        """The handler of ``ctx``'s attempt starts now."""
        self._write(ctx, "start")

    def ended(self, ctx: StepContext, outcome: Outcome) -> None:
        """The handler of ``ctx``'s attempt ended now, with ``outcome``."""
        self._write(ctx, "end", outcome=str(outcome))

    def _write(self, ctx: StepContext, event: str, **extra: str) -> None:
        line = {
            "event": event,
            "at": time.time(),
            "worker_id": self._worker_id,
            "job_id": str(ctx.job_id),
            "attempt_id": str(ctx.attempt_id),
            "step": ctx.step,
            **extra,
        }
        os.write(self._fd, (json.dumps(line) + "\n").encode())


def recorded(handler: StepHandler, journal: Journal) -> StepHandler:
    """``handler``, journalling each run's start and end (same queue, same kind)."""
    fn = handler.fn

    if handler.is_async:

        async def run_async(ctx: StepContext) -> Any:
            journal.started(ctx)
            outcome = Outcome.FAILED
            try:
                value = await fn(ctx)
            except asyncio.CancelledError:
                outcome = Outcome.STOPPED
                raise
            else:
                outcome = Outcome.STOPPED if ctx.cancelled else Outcome.COMPLETED
                return value
            finally:
                journal.ended(ctx, outcome)

        return StepHandler(handler.queue, run_async)

    def run_blocking(ctx: StepContext) -> Any:
        journal.started(ctx)
        outcome = Outcome.FAILED
        try:
            value = fn(ctx)
        except Exception:
            outcome = Outcome.STOPPED if ctx.cancelled else Outcome.FAILED
            raise
        else:
            outcome = Outcome.STOPPED if ctx.cancelled else Outcome.COMPLETED
            return value
        finally:
            journal.ended(ctx, outcome)

    return StepHandler(handler.queue, run_blocking)


def worker() -> Worker:
    """The demo worker (``SEGUE_WORKER_CONCURRENCY`` slots), journalling every handler run."""
    directory = os.environ.get(JOURNAL_ENV)
    if not directory:
        raise RuntimeError(f"{JOURNAL_ENV} must name the journal directory")
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    journal = Journal(Path(directory), worker_id)
    handlers = [recorded(handler, journal) for handler in demo_handlers()]
    return Worker(handlers=handlers, concurrency=concurrency_from_env(), worker_id=worker_id)


# --- reading it back -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One handler run of an attempt on one worker."""

    worker_id: str
    job_id: str
    attempt_id: str
    step: str
    started: float
    ended: float | None
    """None: no ``end`` line (the worker was killed while it ran)."""
    outcome: Outcome | None

    @property
    def pid(self) -> int | None:
        """The worker's pid (worker ids are ``host:pid``)."""
        return worker_pid(self.worker_id)

    @property
    def ran_to_end(self) -> bool:
        """Whether the handler did its work (returned or failed on its own), not stopped."""
        return self.outcome in (Outcome.COMPLETED, Outcome.FAILED)


def worker_pid(worker_id: str | None) -> int | None:
    """The pid in a ``host:pid`` worker id, None if it has none."""
    try:
        return int(str(worker_id).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def read_runs(directory: Path) -> list[Run]:
    """Every run journalled in ``directory``, by start time (cut-off lines are skipped)."""
    runs: list[Run] = []
    for path in sorted(directory.glob("*.jsonl")):
        runs.extend(_runs_of(_lines(path)))
    return sorted(runs, key=lambda run: run.started)


def _lines(path: Path) -> Iterable[dict[str, Any]]:
    for text in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:  # the last line of a killed worker
            continue
        if isinstance(line, dict):
            yield line


def _runs_of(lines: Iterable[dict[str, Any]]) -> list[Run]:
    """Pair each start with its end (one attempt runs at most once at a time per worker)."""
    open_runs: dict[str, dict[str, Any]] = {}
    runs: list[Run] = []
    for line in lines:
        attempt_id = str(line["attempt_id"])
        if line["event"] == "start":
            if attempt_id in open_runs:
                runs.append(_run(open_runs.pop(attempt_id), None))
            open_runs[attempt_id] = line
        elif attempt_id in open_runs:
            runs.append(_run(open_runs.pop(attempt_id), line))
    runs.extend(_run(start, None) for start in open_runs.values())
    return runs


def _run(start: dict[str, Any], end: dict[str, Any] | None) -> Run:
    return Run(
        worker_id=str(start["worker_id"]),
        job_id=str(start["job_id"]),
        attempt_id=str(start["attempt_id"]),
        step=str(start["step"]),
        started=float(start["at"]),
        ended=None if end is None else float(end["at"]),
        outcome=None if end is None else Outcome(end["outcome"]),
    )
