"""The outbox relay deletes only what the broker confirmed, and a row the broker
keeps refusing never holds up the rows behind it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fakes import T0, Clock, FakePublisher, FakeRelayStore, refuse_keys
from segue.protocol.envelope import Outgoing
from segue.service.relay import QUARANTINE_AFTER, OutboxRelay
from segue.store.repository import OutboxRow

GRACE_S = 5.0
OLD = T0 - timedelta(seconds=60)


def task(key: str) -> Outgoing:
    return Outgoing(exchange="test.tasks", routing_key=key, body=key.encode(), message_id=key)


def relay(store: FakeRelayStore, publisher: FakePublisher) -> OutboxRelay:
    return OutboxRelay(store, publisher, Clock(), interval_s=10.0, grace_s=GRACE_S)


def stored(store: FakeRelayStore, *keys: str) -> list[OutboxRow]:
    """Rows for tasks with these routing keys, old enough for the relay."""
    rows = []
    for key in keys:
        message = task(key)
        rows.append(OutboxRow(store.add(message, OLD), message))
    return rows


def keys(messages: list[Outgoing]) -> list[str]:
    return [message.routing_key for message in messages]


def remaining(store: FakeRelayStore) -> list[str]:
    return sorted(message.routing_key for message in store.rows.values())


# --- send and flush ---------------------------------------------------------------------


async def test_send_deletes_confirmed_rows_and_leaves_refused_ones() -> None:
    store, publisher = FakeRelayStore(), FakePublisher(refuse_keys("b"))
    outbox = relay(store, publisher)
    rows = stored(store, "a", "b", "c")
    notice = Outgoing(exchange="test.updates", routing_key="job.x.status", body=b"{}")

    missed = await outbox.send(rows, [notice])
    await outbox.flush_confirmed()

    assert missed == 1
    assert keys(publisher.published) == ["a", "c", "job.x.status"]
    assert store.deleted == [[rows[0].id, rows[2].id]]
    assert remaining(store) == ["b"]


async def test_send_publishes_rows_and_notices_together() -> None:
    store, publisher = FakeRelayStore(), FakePublisher()
    rows = stored(store, "a", "b")
    notice = Outgoing(exchange="test.updates", routing_key="job.x.progress", body=b"{}")

    missed = await relay(store, publisher).send(rows, [notice])

    assert missed == 0
    assert [keys(batch) for batch in publisher.attempts] == [["a", "b", "job.x.progress"]]


async def test_a_lost_notice_is_not_a_missed_row() -> None:
    store, publisher = FakeRelayStore(), FakePublisher(refuse_keys("job.x.status"))
    rows = stored(store, "a")
    notice = Outgoing(exchange="test.updates", routing_key="job.x.status", body=b"{}")

    assert await relay(store, publisher).send(rows, [notice]) == 0


async def test_confirmed_ids_are_given_back_when_their_delete_fails() -> None:
    store, publisher = FakeRelayStore(), FakePublisher()
    outbox = relay(store, publisher)
    rows = stored(store, "a", "b")
    await outbox.send(rows)
    store.failing_deletes = 1

    with pytest.raises(ConnectionResetError):
        await outbox.flush_confirmed()
    assert remaining(store) == ["a", "b"]

    await outbox.flush_confirmed()

    assert store.deleted == [[rows[0].id, rows[1].id]]
    assert remaining(store) == []


# --- leftovers --------------------------------------------------------------------------


async def test_leftovers_are_published_and_only_confirmed_rows_deleted() -> None:
    store, publisher = FakeRelayStore(), FakePublisher(refuse_keys("b"))
    rows = stored(store, "a", "b", "c")
    fresh = store.add(task("fresh"), T0)  # within the grace period: send() has it in hand

    due = await relay(store, publisher).publish_leftovers()

    assert due == 3
    assert store.claimed == [[row.id for row in rows]]
    assert store.deleted == [[rows[0].id, rows[2].id]]
    assert remaining(store) == ["b", "fresh"]
    assert fresh in store.rows


async def test_a_row_refused_alone_is_set_aside_and_the_others_go_on() -> None:
    store, publisher = FakeRelayStore(), FakePublisher(refuse_keys("b"))
    outbox = relay(store, publisher)
    _, refused, _ = stored(store, "a", "b", "c")
    await outbox.publish_leftovers()
    stored(store, "d")

    await outbox.publish_leftovers()

    assert refused.id not in store.claimed[-1]
    assert keys(publisher.attempts[-1]) == ["d"]
    assert keys(publisher.published) == ["a", "c", "d"]
    assert remaining(store) == ["b"]


async def test_a_row_that_fails_its_whole_batch_is_singled_out_by_publishing_alone() -> None:
    store = FakeRelayStore()
    publisher = FakePublisher(refuse_keys("b"), refusal_fails_batch=True)
    outbox = relay(store, publisher)
    _, refused, _ = stored(store, "a", "b", "c")

    await outbox.publish_leftovers()
    await outbox.publish_leftovers()

    assert keys(publisher.published) == ["a", "c"]
    assert remaining(store) == ["b"]
    assert refused.id not in store.claimed[-1]


async def test_a_refused_row_at_the_head_of_the_outbox_does_not_stall_the_rest() -> None:
    store = FakeRelayStore()
    publisher = FakePublisher(refuse_keys("poison"), refusal_fails_batch=True)
    outbox = relay(store, publisher)
    stored(store, "poison", "a", "b")

    for _ in range(3):
        await outbox.publish_leftovers()

    assert keys(publisher.published) == ["a", "b"]
    assert remaining(store) == ["poison"]


async def test_an_outage_singles_out_no_row() -> None:
    store, publisher = FakeRelayStore(), FakePublisher()
    publisher.refuse_everything()
    outbox = relay(store, publisher)
    rows = stored(store, "a", "b", "c", "d")

    await outbox.publish_leftovers()

    # The batch, then rows alone until three in a row failed: the broker is away.
    assert [keys(batch) for batch in publisher.attempts] == [
        ["a", "b", "c", "d"],
        ["a"],
        ["b"],
        ["c"],
    ]
    assert remaining(store) == ["a", "b", "c", "d"]

    publisher.refuse = lambda _message: False
    await outbox.publish_leftovers()

    assert store.claimed[-1] == [row.id for row in rows]
    assert remaining(store) == []


async def test_a_row_refused_again_and_again_is_quarantined_with_the_reason() -> None:
    store, publisher = FakeRelayStore(), FakePublisher(refuse_keys("b"))
    quarantined: list[int] = []
    outbox = OutboxRelay(
        store,
        publisher,
        Clock(),
        interval_s=0.0,  # no back-off wait between tries
        grace_s=GRACE_S,
        on_quarantine=lambda: quarantined.append(1),
    )
    _, refused, _ = stored(store, "a", "b", "c")

    for _ in range(QUARANTINE_AFTER):
        stored(store, "more")
        await outbox.publish_leftovers()

    assert store.quarantined == {refused.id: (QUARANTINE_AFTER, "PublishError: broker refused 'b'")}
    assert quarantined == [1]
    assert remaining(store) == ["b"]  # kept, with the reason, for an operator
    await outbox.publish_leftovers()
    assert refused.id not in store.claimed[-1]


async def test_a_row_taken_on_its_last_try_is_published_not_quarantined() -> None:
    store = FakeRelayStore()
    refusals = {"b": QUARANTINE_AFTER - 1}

    def refuse(message: Outgoing) -> bool:
        left = refusals.get(message.routing_key, 0)
        refusals[message.routing_key] = left - 1
        return left > 0

    publisher = FakePublisher(refuse)
    outbox = OutboxRelay(store, publisher, Clock(), interval_s=0.0, grace_s=GRACE_S)
    stored(store, "a", "b")

    for _ in range(QUARANTINE_AFTER):
        stored(store, "more")
        await outbox.publish_leftovers()

    assert store.quarantined == {}
    assert "b" in keys(publisher.published)
    assert "b" not in remaining(store)
