"""Who the client is: its RabbitMQ user, and the job ids it chooses.

The user is the one the connection authenticates as. RabbitMQ refuses a
command whose ``user_id`` is any other, so the orchestrator takes it as the
command's author: the owner of the jobs it submits.

Job ids are random, or derived from an idempotency key. Submitting the same job
id twice yields one job, so deriving the id from a key the caller already has
(an order number, a file hash) makes retried submissions safe, even across
processes.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit
from uuid import UUID, uuid4, uuid5

DEFAULT_USER = "guest"
"""The user of an AMQP URL that names none (as aiormq logs in)."""

SEGUE_IDEMPOTENCY_NAMESPACE = UUID("5e6b2f1c-8a43-5d0e-9c1f-3b7a2d9e4f60")
"""UUID namespace of idempotency keys; part of the contract, never change it."""


def job_id_for_key(idempotency_key: str) -> UUID:
    """The job id that ``idempotency_key`` stands for (the same key, the same id)."""
    if not idempotency_key:
        raise ValueError("an idempotency key must not be empty")
    return uuid5(SEGUE_IDEMPOTENCY_NAMESPACE, idempotency_key)


def choose_job_id(job_id: UUID | None, idempotency_key: str | None) -> UUID:
    """The id of a new submission: ``job_id``, else derived from the key, else random."""
    if job_id is not None and idempotency_key is not None:
        raise ValueError("give either job_id or idempotency_key, not both")
    if job_id is not None:
        return job_id
    if idempotency_key is not None:
        return job_id_for_key(idempotency_key)
    return uuid4()


def connection_user(amqp_url: str) -> str:
    """The user a connection to ``amqp_url`` logs in as: the URL's (percent-decoded),
    else ``guest``."""
    user = urlsplit(amqp_url).username
    return unquote(user) if user else DEFAULT_USER
