"""Prometheus metrics of one orchestrator (a registry per service, no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from segue.broker.boundary import Outcome, Verdict
from segue.service.operator_metrics import OperatorMetrics


class Metrics:
    """The orchestrator's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "segue_messages_total",
            "Messages handled, by queue and verdict (ack, dead_letter, requeue).",
            ["queue", "verdict"],
            registry=self.registry,
        )
        self.handling_seconds = Histogram(
            "segue_message_handling_seconds",
            "Time from receiving a message to settling it.",
            ["queue"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.outbox_rows = Gauge(
            "segue_outbox_rows", "Outbox rows not yet published.", registry=self.registry
        )
        self.events_lag = Gauge(
            "segue_events_lag_seconds",
            "How far the deadline horizon trails the clock: the age of the oldest worker "
            "event being handled (0 when none is).",
            registry=self.registry,
        )
        self.deadline_lag = Gauge(
            "segue_deadline_horizon_lag_seconds",
            "How far behind the clock the last sweep judged deadlines: the earliest horizon "
            "of every replica that still binds (a silent replica binds until the events "
            "queue is seen drained without it).",
            registry=self.registry,
        )
        self.outbox_quarantined = Counter(
            "segue_outbox_quarantined_total",
            "Outbox rows set aside after the broker refused them again and again.",
            registry=self.registry,
        )
        self.timer_failures = Counter(
            "segue_timer_failures_total",
            "Jobs whose timers could not be handled (postponed, or failed by an engine error).",
            registry=self.registry,
        )
        self._counted: dict[tuple[str, str], Counter] = {}
        self._timed: dict[str, Histogram] = {}
        self.ready = Gauge(
            "segue_ready",
            "1 when the database and the broker are reachable.",
            registry=self.registry,
        )
        self.jobs_pruned = Counter(
            "segue_jobs_pruned_total",
            "Finished jobs deleted (with their attempts and history) once past retention.",
            registry=self.registry,
        )
        self.pending_cancels_pruned = Counter(
            "segue_pending_cancels_pruned_total",
            "Cancels of jobs never submitted, deleted once past retention.",
            registry=self.registry,
        )
        self.outbox_pruned = Counter(
            "segue_outbox_pruned_total",
            "Quarantined outbox rows nobody released, deleted once past retention.",
            registry=self.registry,
        )
        self.operator = OperatorMetrics(self.registry)

    def observe(self, queue: str, outcome: Outcome, seconds: float) -> None:
        """Count one settled message (the consume boundary calls this)."""
        key = (queue, outcome.verdict.value)
        counter = self._counted.get(key)
        if counter is None:  # looking a labelled child up costs more than counting
            counter = self._counted[key] = self.messages.labels(queue=queue, verdict=key[1])
        counter.inc()
        if outcome.verdict is Verdict.DEAD_LETTER:
            self.operator.dead_lettered(queue)
        timer = self._timed.get(queue)
        if timer is None:
            timer = self._timed[queue] = self.handling_seconds.labels(queue=queue)
        timer.observe(seconds)
