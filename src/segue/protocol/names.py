"""Every exchange, queue and routing-key name Segue uses, in one place.

All names are derived from a namespace prefix (``SEGUE_NAMESPACE``) so several
installations can share one RabbitMQ vhost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
QUEUE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
MAX_PRIORITY = 9
"""Highest job priority; task queues are declared with ``x-max-priority`` of this."""


@dataclass(frozen=True)
class Names:
    """The topology names of one Segue installation."""

    namespace: str = "segue"

    def __post_init__(self) -> None:
        if not NAMESPACE_PATTERN.match(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must match {NAMESPACE_PATTERN.pattern}")

    @property
    def commands_queue(self) -> str:
        """Durable queue: clients -> orchestrator (submit, cancel, queries)."""
        return f"{self.namespace}.commands"

    @property
    def events_queue(self) -> str:
        """Durable queue: workers -> orchestrator (started, progress, results)."""
        return f"{self.namespace}.events"

    @property
    def tasks_exchange(self) -> str:
        """Durable direct exchange: orchestrator -> workers, routing key = step queue."""
        return f"{self.namespace}.tasks"

    def task_queue(self, step_queue: str) -> str:
        """Durable priority queue that workers serving ``step_queue`` consume."""
        return f"{self.namespace}.task.{step_queue}"

    @property
    def updates_exchange(self) -> str:
        """Durable topic exchange: orchestrator -> clients, job updates."""
        return f"{self.namespace}.updates"

    @property
    def control_exchange(self) -> str:
        """Durable topic exchange: orchestrator -> workers, e.g. cancel an attempt."""
        return f"{self.namespace}.control"

    @property
    def dead_exchange(self) -> str:
        """Fanout exchange collecting rejected (poison) messages."""
        return f"{self.namespace}.dead"

    @property
    def dead_queue(self) -> str:
        """Durable queue bound to the dead-letter exchange."""
        return f"{self.namespace}.dead"


def update_routing_key(job_id: UUID, kind: str) -> str:
    """Routing key of a job update: ``job.<id>.<kind>`` (status, progress or result)."""
    return f"job.{job_id}.{kind}"


def job_updates_binding(job_id: UUID) -> str:
    """Binding key that receives every update of one job."""
    return f"job.{job_id}.*"


CC_HEADER = "CC"
"""Message header naming more routing keys for one publish (RabbitMQ's
sender-selected distribution)."""
UPDATES_KEY_PATTERN = re.compile(r"^client\.[A-Za-z0-9_-]{1,64}$")
"""What a submitter's own updates key looks like (see :func:`client_updates_key`)."""


def client_updates_key(client_id: str) -> str:
    """The routing key a client binds its queue with once to receive every update of
    the jobs it submits: each update of such a job is published with this key in its
    ``CC`` header (RabbitMQ's sender-selected distribution), so no per-job binding is
    needed."""
    key = f"client.{client_id}"
    if not UPDATES_KEY_PATTERN.match(key):
        raise ValueError(f"client id {client_id!r} must match {UPDATES_KEY_PATTERN.pattern}")
    return key


EVERY_ATTEMPT_BINDING = "attempt.*"
"""Binding key that receives the control messages of every attempt."""


def attempt_control_key(attempt_id: UUID) -> str:
    """Routing key of control messages for one step attempt."""
    return f"attempt.{attempt_id}"
