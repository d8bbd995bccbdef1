"""Retry delays: capped exponential backoff with deterministic jitter.

The jitter is derived from the id of the attempt being scheduled rather than
from a random generator, so :func:`segue.engine.machine.decide` stays pure and
replaying an event gives the same ``due_at``, while jobs failing together
still spread their retries.
"""

from __future__ import annotations

from uuid import UUID

from segue.workflows.model import RetryPolicy


def backoff_s(policy: RetryPolicy, failed_number: int) -> float:
    """Delay before the retry after attempt ``failed_number`` fails, without jitter.

    ``initial_delay_s * backoff_factor ** (failed_number - 1)``, capped at
    ``max_delay_s``. Multiplied step by step, so a large factor never overflows.
    """
    delay = policy.initial_delay_s
    for _ in range(failed_number - 1):
        if delay <= 0 or delay >= policy.max_delay_s:
            break
        delay *= policy.backoff_factor
    return min(delay, policy.max_delay_s)


def unit_jitter(attempt_id: UUID) -> float:
    """A number in ``[-1, 1)`` taken from the id's 53 leading (hash-derived) bits.

    53 bits fit a float's mantissa exactly, so the result never rounds up to 1.
    """
    return (attempt_id.int >> 75) / 2**52 - 1.0


def retry_delay_s(policy: RetryPolicy, failed_number: int, attempt_id: UUID) -> float:
    """Delay before dispatching retry ``attempt_id``: backoff ± ``jitter`` of itself.

    The cap applies to the backoff; jitter then spreads it by up to
    ``policy.jitter`` either way, so retries of many jobs do not arrive together.
    """
    base = backoff_s(policy, failed_number)
    return max(0.0, base * (1.0 + policy.jitter * unit_jitter(attempt_id)))
