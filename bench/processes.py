"""Child processes of the benchmark, and what ``/proc`` says about them.

Every child runs in its own session (so a Ctrl-C in the terminal reaches only
the suite, which then stops its children in order) and is registered in a
:class:`Children` set that terminates whatever is left on exit, and kills it
if it does not stop in time. An ``atexit`` hook kills any child still alive if
the suite itself dies before it could clean up.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_WAIT_S = 15.0

_alive: set[int] = set()


def _kill_leftovers() -> None:
    for pid in list(_alive):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from ``/proc/<pid>/stat``, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int, key: str) -> int:
    """A ``VmRSS``/``VmHWM``-style line of ``/proc/<pid>/status``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


class Child:
    """One running child process, its output kept in a log file."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def target_pid(self) -> int:
        """The process doing the work: the child's own child if it has one (a profiler's
        target), else the child itself."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            first = children.read_text().split()
        except OSError:
            return self.pid
        return int(first[0]) if first else self.pid

    def check_alive(self) -> None:
        """Raise with the end of the child's log if it has exited."""
        if self.process.returncode is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of the child's output."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    async def stop(self, timeout_s: float = STOP_WAIT_S) -> int | None:
        """SIGTERM the child's process group, SIGKILL it after ``timeout_s``."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                await self.process.wait()
        # The group may outlive its leader (e.g. a profiler's target).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        _alive.discard(self.pid)
        return self.process.returncode


class Children:
    """The children of one benchmark step; all are stopped when the block ends."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self._log_dir = log_dir or Path(tempfile.mkdtemp(prefix="segue-bench-"))
        self._children: list[Child] = []

    @property
    def log_dir(self) -> Path:
        """Where the children's output goes."""
        return self._log_dir

    async def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        """Start ``argv`` with ``env`` added to this process's environment."""
        log = self._log_dir / f"{name}-{len(self._children)}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _alive.add(process.pid)
        child = Child(name, process, log)
        self._children.append(child)
        return child

    async def stop_all(self) -> None:
        """Stop every child, the last started first."""
        while self._children:
            await self._children.pop().stop()

    def check_alive(self) -> None:
        """Raise if any child has exited."""
        for child in self._children:
            child.check_alive()

    def kill_all(self) -> None:
        """SIGKILL every child's process group at once (when there is no time to wait)."""
        for child in self._children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            _alive.discard(child.pid)
        self._children.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop_all()
        except BaseException:
            self.kill_all()
            raise
