"""Who the client is: its user, from the broker URL; job ids: chosen, derived or random."""

from __future__ import annotations

from uuid import UUID, uuid5

import pytest

from segue.client import SEGUE_IDEMPOTENCY_NAMESPACE, job_id_for_key
from segue.client.identity import choose_job_id, connection_user


def test_the_same_key_always_names_the_same_job() -> None:
    assert job_id_for_key("order-42") == job_id_for_key("order-42")
    assert job_id_for_key("order-42") != job_id_for_key("order-43")
    assert job_id_for_key("order-42") == uuid5(SEGUE_IDEMPOTENCY_NAMESPACE, "order-42")


def test_the_derivation_is_stable_across_releases() -> None:
    # Changing the namespace would silently break idempotency for every user.
    assert job_id_for_key("order-42") == UUID("27b0d15a-2572-558c-9d3a-6ddeded260a0")


def test_choose_job_id() -> None:
    given = UUID(int=7)
    assert choose_job_id(given, None) == given
    assert choose_job_id(None, "k") == job_id_for_key("k")
    assert choose_job_id(None, None) != choose_job_id(None, None)
    with pytest.raises(ValueError, match="not both"):
        choose_job_id(given, "k")
    with pytest.raises(ValueError, match="empty"):
        job_id_for_key("")


@pytest.mark.parametrize(
    ("url", "user"),
    [
        ("amqp://segue-alice:pw@rabbit:5672/", "segue-alice"),
        ("amqps://bob:pw@rabbit/prod?cafile=/ca.pem", "bob"),
        ("amqp://ops%40example.com:pw@rabbit/", "ops@example.com"),
        ("amqp://rabbit:5672/", "guest"),
        ("amqp://:pw@rabbit/", "guest"),
    ],
)
def test_the_connection_user_is_the_urls_else_guest(url: str, user: str) -> None:
    assert connection_user(url) == user
