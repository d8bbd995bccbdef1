"""When the run's faults struck, in wall-clock seconds (``time.time()``), for the audit.

Some guarantees are about timing: a second worker running a task must be
stopped soon, a worker alive throughout must not be declared lost. The audit
judges those only where the run was calm, so the timeline keeps every fault
that may legitimately delay the orchestrator's answers as a :class:`Disturbance`,
and every worker process's life as a :class:`Life`: the audit must not blame the
system for a step whose worker the test killed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Cause(StrEnum):
    """What disturbed the run."""

    ORCHESTRATOR_KILL = "orchestrator_kill"
    ORCHESTRATOR_PAUSE = "orchestrator_pause"
    RABBITMQ_RESTART = "rabbitmq_restart"
    POSTGRES_RESTART = "postgres_restart"


SETTLE_S = 5.0
"""After a disturbance ends, processes still reconnect, restart and catch up this long."""


@dataclass(frozen=True)
class Disturbance:
    """A fault from ``start`` to ``end`` (wall clock); its effects last ``SETTLE_S`` longer."""

    cause: Cause
    start: float
    end: float

    def overlaps(self, start: float, end: float, settle_s: float = SETTLE_S) -> bool:
        """Whether [``start``, ``end``] meets the disturbance or its settling time."""
        return start <= self.end + settle_s and end >= self.start


@dataclass(frozen=True)
class Life:
    """One worker process: started, and ended (None: still running at the end of the run)."""

    pid: int
    started: float
    ended: float | None = None
    killed: bool = False
    """True if the test SIGKILLed it; an ``ended`` process that was not killed exited
    on its own (or was stopped at the end of the run)."""


@dataclass
class Timeline:
    """Every disturbance of a run and every worker process's life."""

    started: float = 0.0
    """When the run started (the origin of the times in failure messages)."""
    disturbances: list[Disturbance] = field(default_factory=list)
    workers: dict[int, Life] = field(default_factory=dict)
    run_ended: float | None = None

    def add(self, cause: Cause, start: float, end: float) -> None:
        """Record a disturbance."""
        self.disturbances.append(Disturbance(cause, start, end))

    def calm(self, start: float, end: float, causes: frozenset[Cause] | None = None) -> bool:
        """Whether no disturbance (of ``causes``, default any) met [``start``, ``end``]."""
        return not any(
            d.overlaps(start, end) for d in self.disturbances if causes is None or d.cause in causes
        )

    def nearest(self, moment: float) -> str:
        """The disturbance closest to ``moment``, relative to it, for failure messages."""
        if not self.disturbances:
            return "no disturbance in the run"

        def distance(d: Disturbance) -> float:
            if d.start <= moment <= d.end:
                return 0.0
            return min(abs(d.start - moment), abs(d.end - moment))

        d = min(self.disturbances, key=distance)
        return (
            f"nearest disturbance: {d.cause} "
            f"from {d.start - moment:+.1f}s to {d.end - moment:+.1f}s of it"
        )

    def since_start(self, moment: float) -> str:
        """``moment`` as seconds into the run, for failure messages."""
        return f"t+{moment - self.started:.1f}s"

    def worker_end(self, pid: int) -> float | None:
        """When worker ``pid`` ended (None: unknown pid, or still running)."""
        life = self.workers.get(pid)
        return None if life is None else life.ended
