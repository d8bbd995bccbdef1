"""Schedules in a real PostgreSQL database: added once per name, listed, paused and
resumed, removed; the workflow file's schedules stored so that a restart with the
same file changes nothing (not even a pause) and a changed definition replaces
the stored one; the owner of a schedule's jobs stored and read back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from segue.store.repository import Store
from segue.store.schedules import (
    NewSchedule,
    ScheduleSource,
    ScheduleStore,
    ScheduleTransaction,
)

NOW = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


BASE = NewSchedule(
    name="nightly",
    workflow="energy_plan",
    cron="0 3 * * *",
    timezone="UTC",
    params={"region": "de"},
    priority=4,
    enabled=True,
    next_due_at=NOW + timedelta(hours=17),
    source=ScheduleSource.CLI,
)


def schedule(name: str = "nightly", **fields: Any) -> NewSchedule:
    return replace(BASE, name=name, **fields)


async def test_add_list_pause_resume_remove(store: Store) -> None:
    schedules = ScheduleStore(store)

    assert await schedules.add(schedule())
    assert not await schedules.add(schedule(cron="* * * * *")), "the name is taken"
    assert await schedules.add(schedule("hourly", cron="0 * * * *"))

    listed = await schedules.all()
    assert [row.name for row in listed] == ["hourly", "nightly"]
    nightly = listed[1]
    assert (nightly.cron, nightly.params, nightly.priority) == ("0 3 * * *", {"region": "de"}, 4)
    assert nightly.enabled
    assert nightly.next_due_at == NOW + timedelta(hours=17)

    assert await schedules.set_enabled("nightly", False)
    paused = await schedules.get("nightly")
    assert paused is not None
    assert not paused.enabled
    later = NOW + timedelta(days=2)
    assert await schedules.set_enabled("nightly", True, later)
    resumed = await schedules.get("nightly")
    assert resumed is not None
    assert resumed.enabled
    assert resumed.next_due_at == later

    assert await schedules.remove("nightly")
    assert not await schedules.remove("nightly")
    assert not await schedules.set_enabled("nightly", False)
    assert [row.name for row in await schedules.all()] == ["hourly"]


async def test_storing_the_same_file_again_keeps_next_due_and_pauses(store: Store) -> None:
    schedules = ScheduleStore(store)
    nightly = schedule(source=ScheduleSource.FILE, definition_hash="v1")
    assert (await schedules.sync_file([nightly])).stored == ["nightly"]
    await schedules.set_enabled("nightly", False)

    again = await schedules.sync_file([replace(nightly, next_due_at=NOW + timedelta(days=9))])

    assert (again.stored, again.removed) == ([], [])
    row = await schedules.get("nightly")
    assert row is not None
    assert not row.enabled, "a pause survives a restart with an unchanged file"
    assert row.next_due_at == nightly.next_due_at


async def test_a_changed_definition_replaces_the_row_and_a_dropped_one_goes(store: Store) -> None:
    schedules = ScheduleStore(store)
    nightly = schedule(source=ScheduleSource.FILE, definition_hash="v1")
    weekly = schedule("weekly", source=ScheduleSource.FILE, definition_hash="w1")
    by_hand = schedule("by_hand")
    await schedules.add(by_hand)
    await schedules.sync_file([nightly, weekly])

    changed = replace(nightly, cron="30 4 * * *", definition_hash="v2", next_due_at=NOW)
    result = await schedules.sync_file([changed])

    assert (result.stored, result.removed) == (["nightly"], ["weekly"])
    rows = {row.name: row for row in await schedules.all()}
    assert set(rows) == {"nightly", "by_hand"}, "schedules added by hand are not the file's"
    assert (rows["nightly"].cron, rows["nightly"].next_due_at) == ("30 4 * * *", NOW)


async def test_the_files_definition_takes_over_a_name_added_by_hand(store: Store) -> None:
    schedules = ScheduleStore(store)
    await schedules.add(schedule(cron="* * * * *"))

    await schedules.sync_file([schedule(source=ScheduleSource.FILE, definition_hash="v1")])

    row = await schedules.get("nightly")
    assert row is not None
    assert (row.cron, row.source) == ("0 3 * * *", ScheduleSource.FILE)


async def test_the_owner_round_trips_through_add_sync_and_list(store: Store) -> None:
    schedules = ScheduleStore(store)
    await schedules.add(schedule("by_hand", owner="segue-alice"))
    await schedules.add(schedule("open"))
    nightly = schedule(source=ScheduleSource.FILE, definition_hash="v1", owner="segue-planner")
    await schedules.sync_file([nightly])

    rows = {row.name: row for row in await schedules.all()}
    assert {name: row.owner for name, row in rows.items()} == {
        "by_hand": "segue-alice",
        "nightly": "segue-planner",
        "open": None,
    }
    assert rows["nightly"].to_json()["owner"] == "segue-planner"

    await schedules.sync_file([replace(nightly, owner="segue-ops", definition_hash="v2")])
    changed = await schedules.get("nightly")
    assert changed is not None
    assert changed.owner == "segue-ops", "a changed definition brings its new owner"

    await schedules.sync_file([replace(nightly, owner=None, definition_hash="v3")])
    async with store.transaction() as tx:
        due = await ScheduleTransaction(tx.connection).due(NOW + timedelta(days=1), limit=10)
    assert {row.name: row.owner for row in due} == {
        "by_hand": "segue-alice",
        "nightly": None,
        "open": None,
    }, "the scheduler reads each schedule's owner"
