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
    def commands_exchange(self) -> str:
        """Durable direct exchange clients publish commands to (routed to the commands
        queue): a client needs write permission on it alone, not on the default
        exchange, which reaches every queue."""
        return f"{self.namespace}.commands-in"

    @property
    def events_exchange(self) -> str:
        """Durable direct exchange workers publish events to (routed to the events queue)."""
        return f"{self.namespace}.events-in"

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

    def reply_queue_prefix(self, user: str | None) -> str:
        """How the names of ``user``'s reply queues begin (``<ns>.reply.<user>.``;
        ``_`` stands for a user that is not routable or not given)."""
        return f"{self.namespace}.reply.{routable_user(user) or '_'}."

    def reply_allowed(self, reply_to: str, user: str | None) -> bool:
        """Whether the orchestrator may answer ``user`` on ``reply_to``: one of the
        user's reply queues, or RabbitMQ's direct reply-to."""
        return reply_to.startswith((DIRECT_REPLY_TO, self.reply_queue_prefix(user)))


USER_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""User names that can appear in routing keys and queue names; the updates of
jobs owned by such a user are routed under ``client.<user>.``, where RabbitMQ's
topic permissions (``^client\\.{username}\\.``) keep other users out."""


def routable_user(user: str | None) -> str | None:
    """``user`` if it can be part of a routing key (see :data:`USER_SEGMENT`), else None."""
    return user if user is not None and USER_SEGMENT.match(user) else None


def update_routing_key(job_id: UUID, kind: str, owner: str | None = None) -> str:
    """Routing key of a job update (``kind``: status, progress or result):
    ``client.<owner>.job.<id>.<kind>`` for a job of a routable owner, else
    ``job.<id>.<kind>``."""
    user = routable_user(owner)
    if user is None:
        return f"job.{job_id}.{kind}"
    return f"client.{user}.job.{job_id}.{kind}"


def job_updates_binding(job_id: UUID, owner: str | None = None) -> str:
    """Binding key that receives every update of one job of ``owner``."""
    return update_routing_key(job_id, "*", owner)


ANY_OWNER_JOB_UPDATES = "#.job.{job_id}.*"
"""Binding (format with ``job_id``) that receives one job's updates whoever owns it
(for admins: topic permissions refuse it to other users)."""


CC_HEADER = "CC"
"""Message header naming more routing keys for one publish (RabbitMQ's
sender-selected distribution)."""
UPDATES_KEY_PATTERN = re.compile(r"^client\.[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})?$")
"""What a submitter's own updates key looks like (see :func:`client_updates_key`)."""


def client_updates_key(client_id: str, user: str | None = None) -> str:
    """The routing key a client binds its queue with once to receive every update of
    the jobs it submits: each update of such a job is published with this key in its
    ``CC`` header (RabbitMQ's sender-selected distribution), so no per-job binding is
    needed. A routable ``user`` is part of it (``client.<user>.<client id>``), so
    topic permissions can keep each user to their own keys."""
    owner = routable_user(user)
    key = f"client.{client_id}" if owner is None else f"client.{owner}.{client_id}"
    if not UPDATES_KEY_PATTERN.match(key):
        raise ValueError(f"client id {client_id!r} must match {UPDATES_KEY_PATTERN.pattern}")
    return key


def updates_key_allowed(key: str, user: str | None) -> bool:
    """Whether a submission by ``user`` may have its updates routed to ``key``: a
    routable user only to keys under ``client.<user>.``."""
    owner = routable_user(user)
    return owner is None or key.startswith(f"client.{owner}.")


DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
"""RabbitMQ's pseudo-queue that routes a reply to the requesting channel itself."""


EVERY_ATTEMPT_BINDING = "attempt.*"
"""Binding key that receives the control messages of every attempt."""


def attempt_control_key(attempt_id: UUID) -> str:
    """Routing key of control messages for one step attempt."""
    return f"attempt.{attempt_id}"
