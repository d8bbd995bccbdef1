"""Where a waiting step stands in its queue and when it may be done: the arithmetic
behind :class:`~segue.protocol.messages.QueueEstimate`, on figures the store
counted when someone asked (:mod:`segue.store.queueing`). Pure: no clock, no I/O.

The model, and what it leaves out:

- **Position.** A task queue is a RabbitMQ priority queue: a task of higher job
  priority is delivered first, tasks of equal priority in the order they were
  dispatched. The position of a job's task is one plus the tasks of that queue
  that will go before it (``ahead``). A retry waiting for its backoff is placed
  as if queued when it is due.
- **Throughput.** If a task waits, every worker of its queue is busy (an idle
  one would have taken it), so the attempts of the queue running right now,
  counted only if heard from lately (``busy``), are the capacity that drains
  the queue; at least one slot per worker that ran or finished a task of the
  queue lately (``workers``: a worker between two tasks is not idle). Each of
  these ``slots`` finishes a task every ``D`` seconds on average, ``D`` being
  the median run time (start to finish) of the step's recent attempts. The
  running ones are half done on average, so the job's task starts after about
  ``(ahead + ½) · D / slots`` seconds (or when its backoff ends, if later) and
  is done ``D`` after that. For a map step, the job's last waiting item is
  what the estimate is for.

Limits: a task of higher priority submitted later still goes first (the ETA
then slips); other steps sharing the queue may run longer or shorter than
this one (only this step's run time is known); a worker that joins or leaves,
or a step whose run time depends on its parameters, makes the estimate wrong
until the figures catch up; tasks a worker prefetched but has not started
count as waiting (they are ahead anyway); with no finished attempt to go by,
or no worker seen running the queue, there is no ETA (``None``), only a
position.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from segue.protocol.messages import QueueEstimate


@dataclass(frozen=True)
class QueueFigures:
    """What the store counted about a job's waiting step and its queue.

    ``ahead_first`` / ``ahead_last``: tasks of the queue delivered before the
    job's first / last waiting task; ``waiting``: tasks waiting in the queue;
    ``tasks``: the job's own among them; ``busy``: attempts of the queue running
    and heard from lately; ``workers``: distinct workers that ran or finished one
    lately; ``durations_s``: run
    times of the step's recent finished attempts; ``due_at``: when a retry
    waiting for its backoff is queued (None: it is queued).
    """

    step: str
    queue: str
    ahead_first: int
    ahead_last: int
    waiting: int
    tasks: int
    busy: int
    workers: int
    durations_s: Sequence[float] = ()
    due_at: datetime | None = None


def estimate_queue(figures: QueueFigures, now: datetime) -> QueueEstimate:
    """The position and ETA of the job's waiting step (see the module's model)."""
    duration_s = statistics.median(figures.durations_s) if figures.durations_s else None
    due_in_s = 0.0
    if figures.due_at is not None:
        due_in_s = max(0.0, (figures.due_at - now).total_seconds())
    return QueueEstimate(
        step=figures.step,
        queue=figures.queue,
        position=figures.ahead_first + 1,
        waiting=max(figures.waiting, figures.tasks),
        tasks=max(1, figures.tasks),
        busy=figures.busy,
        workers=figures.workers,
        step_duration_s=duration_s,
        samples=len(figures.durations_s),
        due_in_s=due_in_s,
        eta_s=eta_s(figures.ahead_last, max(figures.busy, figures.workers), duration_s, due_in_s),
        at=now,
    )


def eta_s(ahead: int, slots: int, duration_s: float | None, due_in_s: float = 0.0) -> float | None:
    """Seconds until a task with ``ahead`` tasks before it is done, ``slots``
    draining the queue at one task per ``duration_s`` each; None without a
    run time or a slot to go by."""
    if duration_s is None or slots < 1:
        return None
    start_s = max(due_in_s, (ahead + 0.5) * duration_s / slots)
    return start_s + duration_s
