"""Job ids chosen by the client: random, or derived from an idempotency key.

Submitting the same job id twice yields one job, so deriving the id from a key
the caller already has (an order number, a file hash) makes retried
submissions safe, even across processes.
"""

from __future__ import annotations

from uuid import UUID, uuid4, uuid5

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
