"""Orchestrator and worker subprocesses that a test can SIGKILL and restart.

A :class:`ProcessGroup` keeps ``size`` identical processes of one role running,
as a process supervisor would: a process the test kills is replaced after a
pause, and one that exits by itself is replaced too and recorded as an
unexpected exit. :meth:`ProcessGroup.stop` reaps every process, so none
outlives the test. :meth:`ProcessGroup.pause` freezes processes for a while
(SIGSTOP, then SIGCONT), as an overloaded host or a long GC pause would.
Each process's life (wall clock) is kept in :attr:`ProcessGroup.lives`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from segue.protocol.names import Names

from .timeline import Life

WATCH_INTERVAL_S = 0.5
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class Exit:
    """A process of a group that ended without the test killing it."""

    role: str
    pid: int
    returncode: int
    uptime_s: float
    log: Path


@dataclass
class _Slot:
    """One place in the group, filled by successive processes."""

    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    generation: int = 0
    log: Path | None = None


def orchestrator_env(
    amqp_url: str, database_url: str, names: Names, workflows: Path, **overrides: str
) -> dict[str, str]:
    """Environment of ``segue serve``: fast timers, JSON logs, no migrations.

    The health port is chosen by the system, so replicas on one host do not
    collide. ``overrides`` are further ``SEGUE_*`` variables.
    """
    return {
        "SEGUE_AMQP_URL": amqp_url,
        "SEGUE_DATABASE_URL": database_url,
        "SEGUE_NAMESPACE": names.namespace,
        "SEGUE_WORKFLOW_CONFIG": str(workflows),
        "SEGUE_SWEEP_INTERVAL_S": "0.2",
        "SEGUE_RELAY_INTERVAL_S": "0.5",
        "SEGUE_RELAY_GRACE_S": "1",
        "SEGUE_LOG_FORMAT": "json",
        "SEGUE_MIGRATE_ON_START": "false",
        "SEGUE_HTTP_HOST": "127.0.0.1",
        "SEGUE_HTTP_PORT": "0",
        **overrides,
    }


def worker_env(amqp_url: str, names: Names, concurrency: int, **overrides: str) -> dict[str, str]:
    """Environment of ``segue worker run segue.demo:worker`` (or of another worker
    taking the same settings); ``overrides`` are further variables."""
    return {
        "SEGUE_AMQP_URL": amqp_url,
        "SEGUE_NAMESPACE": names.namespace,
        "SEGUE_WORKER_CONCURRENCY": str(concurrency),
        **overrides,
    }


def segue_argv(*arguments: str) -> list[str]:
    """The argv running the ``segue`` command with this test's interpreter."""
    return [sys.executable, "-m", "segue", *arguments]


class ProcessGroup:
    """``size`` processes running ``argv`` with ``env``, each logging to its own file."""

    def __init__(
        self,
        role: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        size: int,
        log_dir: Path,
        restart_delay_s: float = 0.5,
    ) -> None:
        self.role = role
        self._argv = list(argv)
        self._env = {**os.environ, **env}
        self._log_dir = log_dir
        self._restart_delay_s = restart_delay_s
        self._slots = [_Slot(index) for index in range(size)]
        self._locks = [asyncio.Lock() for _ in range(size)]
        self._watchdog: asyncio.Task[None] | None = None
        self.unexpected_exits: list[Exit] = []
        self.lives: dict[int, Life] = {}
        """Every process started so far, by pid."""

    @property
    def size(self) -> int:
        """How many processes the group keeps running."""
        return len(self._slots)

    def pids(self) -> dict[int, int]:
        """Slot index by pid, for the processes running now."""
        return {
            slot.process.pid: slot.index
            for slot in self._slots
            if slot.process is not None and slot.process.returncode is None
        }

    def logs(self) -> list[Path]:
        """The log file of every process started so far."""
        return sorted(self._log_dir.glob(f"{self.role}-*.log"))

    async def start(self) -> None:
        """Start every process and the watchdog that replaces ones that exit."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for slot in self._slots:
            await self._spawn(slot)
        self._watchdog = asyncio.create_task(self._watch(), name=f"{self.role}-watchdog")

    async def kill(self, index: int, restart_after_s: float) -> int:
        """SIGKILL the process in slot ``index``, then start a new one after a pause.

        Returns the killed pid.
        """
        async with self._locks[index]:
            slot = self._slots[index]
            process = slot.process
            assert process is not None
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            await process.wait()
            self._ended(process.pid, killed=True)
            await asyncio.sleep(restart_after_s)
            await self._spawn(slot)
            return process.pid

    async def kill_many(self, indexes: Sequence[int], restart_after_s: float) -> None:
        """SIGKILL several processes at the same moment and restart them after a pause."""
        await asyncio.gather(*(self.kill(index, restart_after_s) for index in indexes))

    async def pause(self, indexes: Sequence[int], paused_s: float) -> None:
        """SIGSTOP the processes in ``indexes`` at once, SIGCONT them ``paused_s`` later."""
        async with contextlib.AsyncExitStack() as held:
            for index in indexes:  # no kill or restart meanwhile
                await held.enter_async_context(self._locks[index])
            frozen = [
                process
                for index in indexes
                if (process := self._slots[index].process) is not None
                and process.returncode is None
            ]
            for process in frozen:
                process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(paused_s)
            finally:
                for process in frozen:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        """Stop the watchdog, then SIGTERM every process, SIGKILL after a grace period."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        running = [
            slot.process
            for slot in self._slots
            if slot.process is not None and slot.process.returncode is None
        ]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            self._ended(process.pid, killed=False)

    async def _spawn(self, slot: _Slot) -> None:
        slot.generation += 1
        slot.log = self._log_dir / f"{self.role}-{slot.index}-{slot.generation}.log"
        with slot.log.open("wb") as log:
            slot.process = await asyncio.create_subprocess_exec(
                *self._argv,
                env=self._env,
                cwd=self._log_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        slot.started_at = time.monotonic()
        pid = slot.process.pid
        self.lives[pid] = Life(pid, time.time())

    def _ended(self, pid: int, killed: bool) -> None:
        life = self.lives.get(pid)
        if life is not None and life.ended is None:
            self.lives[pid] = replace(life, ended=time.time(), killed=killed)

    async def _watch(self) -> None:
        """Replace processes that exited on their own (e.g. started while a service was down)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for slot, lock in zip(self._slots, self._locks, strict=True):
                if lock.locked() or not _exited(slot):
                    continue
                async with lock:
                    if not _exited(slot):  # killed and replaced meanwhile
                        continue
                    self._record_exit(slot)
                    await asyncio.sleep(self._restart_delay_s)
                    await self._spawn(slot)

    def _record_exit(self, slot: _Slot) -> None:
        assert slot.process is not None
        assert slot.log is not None
        self._ended(slot.process.pid, killed=False)
        self.unexpected_exits.append(
            Exit(
                role=self.role,
                pid=slot.process.pid,
                returncode=slot.process.returncode or 0,
                uptime_s=round(time.monotonic() - slot.started_at, 1),
                log=slot.log,
            )
        )


def _exited(slot: _Slot) -> bool:
    return slot.process is not None and slot.process.returncode is not None


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])
