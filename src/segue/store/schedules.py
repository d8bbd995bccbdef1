"""Schedules of recurring jobs in PostgreSQL (table ``schedules``).

Two ways in:

- :class:`ScheduleTransaction`, inside a job transaction of the scheduler: take
  the due schedules (``FOR UPDATE SKIP LOCKED``, so replicas never take the
  same one) and record what firing them did, in the transaction that submits
  their jobs: a schedule advances if and only if its job is stored.
- :class:`ScheduleStore`, for everything else (``segue schedules``, and storing
  the workflow file's schedules at start), each call a transaction of its own.

A schedule from the workflow file carries a fingerprint of its definition:
storing the file again changes only the schedules whose definition changed, so
a restart keeps ``next_due_at`` and a pause made with ``segue schedules pause``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg

from segue.store.mapping import aware, rows_affected
from segue.store.repository import Store, to_json_text


class ScheduleSource(StrEnum):
    """Where a schedule was defined."""

    FILE = "file"
    CLI = "cli"


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A schedule to store; ``definition_hash`` fingerprints a file's definition;
    ``owner`` is the user its jobs belong to (None: open to every user)."""

    name: str
    workflow: str
    cron: str
    timezone: str
    params: dict[str, Any]
    priority: int
    enabled: bool
    next_due_at: datetime
    source: ScheduleSource
    definition_hash: str | None = None
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A stored schedule, and what it did last; ``owner`` as in :class:`NewSchedule`."""

    name: str
    workflow: str
    cron: str
    timezone: str
    params: dict[str, Any]
    priority: int
    enabled: bool
    next_due_at: datetime
    last_due_at: datetime | None
    last_fired_at: datetime | None
    last_job_id: UUID | None
    last_error: str | None
    source: ScheduleSource
    created_at: datetime
    updated_at: datetime
    owner: str | None = None

    @classmethod
    def of(cls, row: asyncpg.Record) -> ScheduleRow:
        """The schedule of a ``schedules`` row."""
        return cls(
            name=row["name"],
            workflow=row["workflow"],
            cron=row["cron"],
            timezone=row["timezone"],
            params=dict(row["params"]),
            priority=row["priority"],
            enabled=row["enabled"],
            next_due_at=row["next_due_at"],
            last_due_at=row["last_due_at"],
            last_fired_at=row["last_fired_at"],
            last_job_id=row["last_job_id"],
            last_error=row["last_error"],
            source=ScheduleSource(row["source"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            owner=row["owner"],
        )

    def to_json(self) -> dict[str, Any]:
        """The schedule as JSON-ready values (``segue schedules list --json``)."""
        return {
            "name": self.name,
            "workflow": self.workflow,
            "cron": self.cron,
            "timezone": self.timezone,
            "params": self.params,
            "priority": self.priority,
            "owner": self.owner,
            "enabled": self.enabled,
            "next_due_at": self.next_due_at.isoformat(),
            "last_due_at": _iso(self.last_due_at),
            "last_fired_at": _iso(self.last_fired_at),
            "last_job_id": None if self.last_job_id is None else str(self.last_job_id),
            "last_error": self.last_error,
            "source": self.source.value,
        }


@dataclass(frozen=True, slots=True)
class Fired:
    """What firing a due schedule did: the job it submitted (None: refused, see
    ``error``) and when it is due next (None: it cannot be computed; the
    schedule is then paused, with ``error`` saying why)."""

    name: str
    due_at: datetime
    fired_at: datetime
    next_due_at: datetime | None
    job_id: UUID | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What storing the workflow file's schedules changed, by schedule name."""

    stored: list[str]
    removed: list[str]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


RECORD_FIRED_SQL = """
UPDATE schedules AS s SET
    next_due_at = COALESCE(f.next_due_at, s.next_due_at),
    enabled = s.enabled AND f.next_due_at IS NOT NULL,
    last_due_at = f.due_at, last_fired_at = f.fired_at,
    last_job_id = COALESCE(f.job_id, s.last_job_id), last_error = f.error,
    updated_at = f.fired_at
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::uuid[],
    $6::text[]) AS f(name, due_at, fired_at, next_due_at, job_id, error)
WHERE s.name = f.name
"""

INSERT_SQL = """
INSERT INTO schedules (name, workflow, cron, timezone, params, priority, enabled, next_due_at,
    source, definition_hash, owner)
SELECT t.name, t.workflow, t.cron, t.timezone, t.params::jsonb, t.priority, t.enabled,
    t.next_due_at, t.source, t.definition_hash, t.owner
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int2[], $7::bool[],
    $8::timestamptz[], $9::text[], $10::text[], $11::text[])
  AS t(name, workflow, cron, timezone, params, priority, enabled, next_due_at, source,
    definition_hash, owner)
"""

ADD_SQL = INSERT_SQL + "ON CONFLICT (name) DO NOTHING RETURNING name"
"""Insert a schedule unless its name is taken."""

UPSERT_SQL = (
    INSERT_SQL
    + """ON CONFLICT (name) DO UPDATE SET
    workflow = EXCLUDED.workflow, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
    params = EXCLUDED.params, priority = EXCLUDED.priority, enabled = EXCLUDED.enabled,
    next_due_at = EXCLUDED.next_due_at, source = EXCLUDED.source,
    definition_hash = EXCLUDED.definition_hash, owner = EXCLUDED.owner, last_error = NULL,
    updated_at = now()
WHERE schedules.definition_hash IS DISTINCT FROM EXCLUDED.definition_hash
RETURNING name
"""
)
"""Insert new schedules; replace those whose definition fingerprint differs (a
schedule added with the CLI under the same name has none: the file's wins)."""


class ScheduleTransaction:
    """Schedule statements inside a transaction the caller holds."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def due(self, now: datetime, limit: int) -> list[ScheduleRow]:
        """Lock up to ``limit`` enabled schedules due at ``now``, earliest first;
        those another transaction holds are skipped."""
        rows = await self._connection.fetch(
            "SELECT * FROM schedules WHERE enabled AND next_due_at <= $1"
            " ORDER BY next_due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            aware(now, "now"),
            limit,
        )
        return [ScheduleRow.of(row) for row in rows]

    async def record_fired(self, fired: Sequence[Fired]) -> None:
        """Advance the fired schedules and note what each did (one statement)."""
        if not fired:
            return
        await self._connection.execute(
            RECORD_FIRED_SQL,
            [f.name for f in fired],
            [f.due_at for f in fired],
            [f.fired_at for f in fired],
            [f.next_due_at for f in fired],
            [f.job_id for f in fired],
            [f.error for f in fired],
        )


class ScheduleStore:
    """Adding, listing, pausing and removing schedules (each call one transaction)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, schedule: NewSchedule) -> bool:
        """Store a new schedule; False (nothing stored) if the name is taken."""
        async with self._store.transaction() as tx:
            stored = await tx.connection.fetch(ADD_SQL, *_columns([schedule]))
        return bool(stored)

    async def all(self) -> list[ScheduleRow]:
        """Every schedule, by name."""
        async with self._store.transaction() as tx:
            rows = await tx.connection.fetch("SELECT * FROM schedules ORDER BY name")
        return [ScheduleRow.of(row) for row in rows]

    async def get(self, name: str) -> ScheduleRow | None:
        """The schedule called ``name``, or None."""
        async with self._store.transaction() as tx:
            row = await tx.connection.fetchrow("SELECT * FROM schedules WHERE name = $1", name)
        return None if row is None else ScheduleRow.of(row)

    async def remove(self, name: str) -> bool:
        """Delete a schedule; False if there was none."""
        async with self._store.transaction() as tx:
            status = await tx.connection.execute("DELETE FROM schedules WHERE name = $1", name)
        return rows_affected(status) > 0

    async def set_enabled(
        self, name: str, enabled: bool, next_due_at: datetime | None = None
    ) -> bool:
        """Pause or resume a schedule (resuming may set when it is due next); False if
        there is none."""
        async with self._store.transaction() as tx:
            status = await tx.connection.execute(
                "UPDATE schedules SET enabled = $2, next_due_at = COALESCE($3, next_due_at),"
                " updated_at = now() WHERE name = $1",
                name,
                enabled,
                aware(next_due_at, "next_due_at"),
            )
        return rows_affected(status) > 0

    async def sync_file(self, schedules: Sequence[NewSchedule]) -> SyncResult:
        """Store the workflow file's schedules: insert new ones, replace changed ones,
        and delete schedules that came from the file but are no longer in it."""
        async with self._store.transaction() as tx:
            stored = (
                await tx.connection.fetch(UPSERT_SQL, *_columns(schedules)) if schedules else []
            )
            removed = await tx.connection.fetch(
                "DELETE FROM schedules WHERE source = 'file' AND NOT name = ANY($1::text[])"
                " RETURNING name",
                [s.name for s in schedules],
            )
        return SyncResult([r["name"] for r in stored], [r["name"] for r in removed])


def _columns(schedules: Sequence[NewSchedule]) -> list[list[Any]]:
    return [
        [s.name for s in schedules],
        [s.workflow for s in schedules],
        [s.cron for s in schedules],
        [s.timezone for s in schedules],
        [to_json_text(s.params) for s in schedules],
        [s.priority for s in schedules],
        [s.enabled for s in schedules],
        [aware(s.next_due_at, "next_due_at") for s in schedules],
        [s.source.value for s in schedules],
        [s.definition_hash for s in schedules],
        [s.owner for s in schedules],
    ]
