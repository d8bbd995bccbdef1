"""The database schema, as SQLAlchemy Core tables.

Every timestamp is ``timestamptz``; every enum is text with a CHECK listing its
values. The migrations in :mod:`segue.store.migrations` create exactly this
schema (an integration test compares the two).

- ``workflow_definitions``: immutable definitions by content hash; jobs pin one.
- ``jobs``: one row per job; ``wake_at`` is when the sweeper must look at it
  (NULL: never), ``last_seq`` how many history entries were written.
- ``step_attempts``: every attempt of every job, ``ordinal`` is its 1-based
  position in ``Job.attempts``; ``item_index`` the map item it runs (NULL: not
  a map), ``iteration`` the run of a repeated step, ``progress_records`` the
  distinct progress reports it received (its name is older than the rule that
  records a thinned subset of them: :mod:`segue.engine.progress`).
- ``job_events``: the append-only history, ``(job_id, seq)``.
- ``outbox``: messages committed with the state they belong to, deleted once
  published; a row the broker keeps refusing is quarantined (``quarantined_at``,
  ``last_error``) instead of retried forever.
- ``pending_cancels``: cancels that arrived before their job's submission; the
  submission then ends the job cancelled before it runs.
- ``omotes_inputs``: the input ESDL and job reference of OMOTES jobs.
- ``omotes_tasks``: the Celery tasks the OMOTES bridge dispatched and has not
  seen the end of. No foreign key to ``jobs``: its rows are locked ``FOR
  UPDATE``, which a key check on insert would wait for; orphans are pruned.
- ``omotes_outputs``: the output ESDL (UTF-8 bytes) of each step attempt an
  OMOTES Celery worker finished; the step output carries only a reference. It
  goes with its job (a key check on insert may wait a moment for the job's
  lock: the bridge writes it once per result, not on a hot path).
- ``schedules``: recurring jobs (see :mod:`segue.store.schedules`); the
  scheduler takes due rows by ``next_due_at`` (partial index on enabled ones);
  ``owner`` is the user their jobs belong to.
- ``jobs.secret`` derives the job's attempt ids and tokens; ``jobs.owner`` is the
  RabbitMQ user that submitted it; ``jobs.update_seq`` numbers its updates.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    literal_column,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from segue.protocol.messages import AttemptStatus, JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def enum_check(column: str, enum: type[StrEnum]) -> str:
    """SQL condition allowing exactly the values of ``enum`` in ``column``."""
    return f"{column} IN ({_quoted(member.value for member in enum)})"


def _quoted(values: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _timestamp(name: str, *, nullable: bool = True) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _json(name: str, *, nullable: bool = False) -> Column[object]:
    # none_as_null: Python None is stored as SQL NULL, never as JSON 'null'.
    return Column(name, JSONB(none_as_null=True), nullable=nullable)


ERROR_TEXT_SQL = "((error ->> 'kind') || ': ') || (error ->> 'message')"
"""The text of a job's error that ``--error`` searches (``kind: message``), as
SQL: a trigram index covers exactly this expression."""

metadata = MetaData(naming_convention=NAMING_CONVENTION)

workflow_definitions = Table(
    "workflow_definitions",
    metadata,
    Column("content_hash", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Text, nullable=False),
    _json("definition"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("content_hash"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("workflow_name", Text, nullable=False),
    Column("workflow_version", Text, nullable=False),
    Column(
        "workflow_hash",
        Text,
        ForeignKey(workflow_definitions.c.content_hash),
        nullable=False,
    ),
    Column("status", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("reference", Text, nullable=True),
    _json("params"),
    _json("outputs"),
    _json("crashes"),
    _json("error", nullable=True),
    Column("current_step", Text, nullable=True),
    _timestamp("created_at", nullable=False),
    _timestamp("updated_at", nullable=False),
    _timestamp("finished_at"),
    _timestamp("deadline_at"),
    Column("run", Integer, nullable=False, server_default=text("1")),
    _timestamp("wake_at"),
    Column("updates_key", Text, nullable=True),
    Column("last_seq", Integer, nullable=False, server_default=text("0")),
    Column("secret", Text, nullable=True),
    Column("owner", Text, nullable=True),
    Column("update_seq", Integer, nullable=False, server_default=text("0")),
    Column("timeout_s", Double, nullable=True),
    PrimaryKeyConstraint("job_id"),
    CheckConstraint(enum_check("status", JobStatus), name="status"),
    Index("ix_jobs_wake_at", "wake_at", postgresql_where=text("wake_at IS NOT NULL")),
    Index("ix_jobs_status_updated_at", "status", "updated_at"),
    Index("ix_jobs_reference", "reference"),
    # Listing, newest first by keyset (segue.store.listing, migration 0008).
    Index("ix_jobs_created_at_job_id", "created_at", "job_id"),
    Index("ix_jobs_status_created_at_job_id", "status", "created_at", "job_id"),
    Index("ix_jobs_workflow_name_created_at_job_id", "workflow_name", "created_at", "job_id"),
    Index("ix_jobs_current_step_created_at_job_id", "current_step", "created_at", "job_id"),
    Index(
        "ix_jobs_owner_created_at_job_id",
        "owner",
        "created_at",
        "job_id",
        postgresql_where=text("owner IS NOT NULL"),
    ),
    Index(
        "ix_jobs_error_text",
        literal_column(f"({ERROR_TEXT_SQL})").label("error_text"),
        postgresql_using="gin",
        postgresql_ops={"error_text": "gin_trgm_ops"},
        postgresql_where=text("error IS NOT NULL"),
    ),
)

step_attempts = Table(
    "step_attempts",
    metadata,
    Column("attempt_id", UUID(as_uuid=True), nullable=False),
    Column(
        "job_id",
        UUID(as_uuid=True),
        ForeignKey(jobs.c.job_id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ordinal", Integer, nullable=False),
    Column("step", Text, nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", Text, nullable=False),
    _timestamp("created_at", nullable=False),
    _timestamp("due_at"),
    _timestamp("dispatched_at"),
    _timestamp("started_at"),
    _timestamp("finished_at"),
    _timestamp("last_seen_at"),
    Column("worker_id", Text, nullable=True),
    Column("run", Integer, nullable=False, server_default=text("1")),
    Column("progress", Double, nullable=True),
    Column("progress_message", Text, nullable=True),
    _json("output", nullable=True),
    _json("error", nullable=True),
    Column("item_index", Integer, nullable=True),
    Column("iteration", Integer, nullable=False, server_default=text("1")),
    Column("progress_records", Integer, nullable=False, server_default=text("0")),
    Column("previous_worker_id", Text, nullable=True),
    PrimaryKeyConstraint("attempt_id"),
    UniqueConstraint("job_id", "ordinal"),
    CheckConstraint(enum_check("status", AttemptStatus), name="status"),
)

job_events = Table(
    "job_events",
    metadata,
    Column(
        "job_id",
        UUID(as_uuid=True),
        ForeignKey(jobs.c.job_id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer, nullable=False),
    Column("type", Text, nullable=False),
    _json("data"),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "seq"),
)

outbox = Table(
    "outbox",
    metadata,
    # BigInteger primary key with autoincrement renders as BIGSERIAL.
    Column("id", BigInteger, autoincrement=True, nullable=False),
    Column("exchange", Text, nullable=False),
    Column("routing_key", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("priority", SmallInteger, nullable=True),
    Column("message_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    _timestamp("quarantined_at"),
    Column("mandatory", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("id"),
    Index("ix_outbox_created_at", "created_at"),
)

omotes_inputs = Table(
    "omotes_inputs",
    metadata,
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("esdl", Text, nullable=False),
    Column("job_reference", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id"),
    Index("ix_omotes_inputs_created_at", "created_at"),
)

omotes_tasks = Table(
    "omotes_tasks",
    metadata,
    Column("attempt_id", UUID(as_uuid=True), nullable=False),
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("task_type", Text, nullable=False),
    Column("token", Text, nullable=True),
    Column("heartbeat_s", Double, nullable=True),
    Column("starts", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _timestamp("published_at"),
    _timestamp("started_at"),
    PrimaryKeyConstraint("attempt_id"),
    Index("ix_omotes_tasks_created_at", "created_at"),
)

omotes_outputs = Table(
    "omotes_outputs",
    metadata,
    Column(
        "job_id",
        UUID(as_uuid=True),
        ForeignKey(jobs.c.job_id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt_id", UUID(as_uuid=True), nullable=False),
    Column("esdl", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id", "attempt_id"),
)

replica_horizons = Table(
    "replica_horizons",
    metadata,
    Column("replica_id", Text, nullable=False),
    Column("horizon", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("drained_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("replica_id"),
)

pending_cancels = Table(
    "pending_cancels",
    metadata,
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("requester", Text, nullable=True),
    Column("admin", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("job_id"),
    Index("ix_pending_cancels_created_at", "created_at"),
)

schedules = Table(
    "schedules",
    metadata,
    Column("name", Text, nullable=False),
    Column("workflow", Text, nullable=False),
    Column("cron", Text, nullable=False),
    Column("timezone", Text, nullable=False, server_default=text("'UTC'")),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("priority", SmallInteger, nullable=False, server_default=text("5")),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    _timestamp("next_due_at", nullable=False),
    _timestamp("last_due_at"),
    _timestamp("last_fired_at"),
    Column("last_job_id", UUID(as_uuid=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("source", Text, nullable=False),
    Column("definition_hash", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("owner", Text, nullable=True),
    PrimaryKeyConstraint("name"),
    CheckConstraint("source IN ('file', 'cli')", name="source"),
    CheckConstraint("priority BETWEEN 0 AND 9", name="priority"),
    Index("ix_schedules_next_due_at", "next_due_at", postgresql_where=text("enabled")),
)
