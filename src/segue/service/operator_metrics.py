"""The series an operator watches and alerts on (docs/operator.md, "Metrics").

Counters and the step-duration histogram are fed from what the applier
commits (:mod:`segue.service.observations`: no query of their own); gauges of
things only the database or the broker knows (jobs by status, tasks waiting,
schedules) are set by the periodic :class:`~segue.service.sampler.Sampler`.
Labels are bounded: workflow and step names come from the workflow file,
queues from the broker topology; never a job id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from segue.protocol.messages import AttemptStatus, JobStatus
from segue.service.observations import StepEnded, ended_steps, finished, submitted
from segue.service.recurrence import FiredOutcome
from segue.store.repository import JobWrite

STEP_SECONDS_BUCKETS = (
    *(0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800),
    *(3600, 7200, 14400, 28800, 43200, 86400),
)
"""Steps take from under a second (tests, demos) to hours (simulations)."""

M = TypeVar("M", Counter, Histogram)


def _child(cache: dict[tuple[str, ...], M], family: M, *labels: str) -> M:
    """The child of ``family`` with these labels, looked up once (a lookup costs more
    than counting)."""
    child = cache.get(labels)
    if child is None:
        child = cache[labels] = family.labels(*labels)
    return child


class OperatorMetrics:
    """Jobs, steps, queues, dead letters and schedules, on the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge(
            "segue_jobs",
            "Jobs stored, by status (refreshed periodically; finished ones until retention).",
            ["status"],
            registry=registry,
        )
        self.jobs_submitted = Counter(
            "segue_jobs_submitted_total",
            "Jobs accepted, by workflow.",
            ["workflow"],
            registry=registry,
        )
        self.jobs_finished = Counter(
            "segue_jobs_finished_total",
            "Jobs that ended, by workflow and final status.",
            ["workflow", "status"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            "segue_step_duration_seconds",
            "How long step attempts ran (started to ended), by workflow, step and outcome.",
            ["workflow", "step", "status"],
            buckets=STEP_SECONDS_BUCKETS,
            registry=registry,
        )
        self.steps_lost = Counter(
            "segue_steps_lost_total",
            "Step attempts whose worker went silent or away (lost heartbeat, redelivery).",
            ["workflow", "step"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "segue_task_queue_depth",
            "Tasks ready in a worker queue of the broker, not yet taken by a worker.",
            ["queue"],
            registry=registry,
        )
        self.tasks_waiting = Gauge(
            "segue_tasks_waiting",
            "Step attempts dispatched to a worker queue and not started yet (database).",
            ["queue"],
            registry=registry,
        )
        self.oldest_waiting = Gauge(
            "segue_task_queue_oldest_age_seconds",
            "Age of the oldest step attempt dispatched to the queue and not started yet.",
            ["queue"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "segue_dead_letters_total",
            "Messages this orchestrator dead-lettered, by the queue they came from.",
            ["queue"],
            registry=registry,
        )
        self.dead_letter_depth = Gauge(
            "segue_dead_letter_queue_depth",
            "Messages kept in the dead-letter queue (bounded by length and age).",
            registry=registry,
        )
        self.schedules_fired = Counter(
            "segue_schedules_fired_total",
            "Due schedules fired, by outcome (submitted, duplicate, refused).",
            ["outcome"],
            registry=registry,
        )
        self.schedules = Gauge(
            "segue_schedules",
            "Schedules stored, by state (enabled, paused).",
            ["state"],
            registry=registry,
        )
        self.schedules_overdue = Gauge(
            "segue_schedules_overdue",
            "Enabled schedules due for longer than a minute without being fired.",
            registry=registry,
        )
        self._queues: set[str] = set()
        self._submitted: dict[tuple[str, ...], Counter] = {}
        self._finished: dict[tuple[str, ...], Counter] = {}
        self._timed: dict[tuple[str, ...], Histogram] = {}
        self._lost: dict[tuple[str, ...], Counter] = {}

    def observe_writes(self, writes: Sequence[JobWrite]) -> None:
        """Count what a committed batch did (the applier calls this after each commit)."""
        for write in writes:
            workflow = write.after.workflow.name
            if submitted(write):
                _child(self._submitted, self.jobs_submitted, workflow).inc()
            status = finished(write)
            if status is not None:
                _child(self._finished, self.jobs_finished, workflow, status.value).inc()
            for ended in ended_steps(write):
                self._step_ended(workflow, ended)

    def _step_ended(self, workflow: str, ended: StepEnded) -> None:
        if ended.seconds is not None:
            labels = (workflow, ended.step, ended.status.value)
            _child(self._timed, self.step_seconds, *labels).observe(ended.seconds)
        if ended.status is AttemptStatus.LOST:
            _child(self._lost, self.steps_lost, workflow, ended.step).inc()

    def dead_lettered(self, queue: str) -> None:
        """Count one message dead-lettered from ``queue``."""
        self.dead_letters.labels(queue).inc()

    def fired(self, outcome: FiredOutcome) -> None:
        """Count one fired schedule."""
        self.schedules_fired.labels(outcome.value).inc()

    def set_jobs(self, counts: Mapping[str, int]) -> None:
        """Jobs by status; a status without jobs is 0."""
        for status in JobStatus:
            self.jobs.labels(status.value).set(counts.get(status.value, 0))

    def set_queues(
        self,
        depths: Mapping[str, int],
        waiting: Mapping[str, int],
        oldest_s: Mapping[str, float],
    ) -> None:
        """The worker queues' gauges; a queue no longer seen loses its series."""
        queues = set(depths) | set(waiting) | set(oldest_s)
        for queue in self._queues - queues:
            for gauge in (self.queue_depth, self.tasks_waiting, self.oldest_waiting):
                gauge.remove(queue)
        for queue in queues:
            self.queue_depth.labels(queue).set(depths.get(queue, 0))
            self.tasks_waiting.labels(queue).set(waiting.get(queue, 0))
            self.oldest_waiting.labels(queue).set(oldest_s.get(queue, 0.0))
        self._queues = queues

    def set_schedules(self, enabled: int, paused: int, overdue: int) -> None:
        """The schedules' gauges."""
        self.schedules.labels("enabled").set(enabled)
        self.schedules.labels("paused").set(paused)
        self.schedules_overdue.set(overdue)
