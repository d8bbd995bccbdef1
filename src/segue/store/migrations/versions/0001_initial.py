"""Initial schema: workflow definitions, jobs, attempts, history, outbox.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

Written by hand, as a frozen snapshot: it must not import
:mod:`segue.store.tables`, whose future changes belong in later revisions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")
ATTEMPT_STATUSES = (
    "scheduled",
    "dispatched",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "lost",
    "cancelled",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _ts(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def _jsonb(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, postgresql.JSONB(), nullable=nullable)


def upgrade() -> None:
    """Create every table and index of the initial schema."""
    _create_workflow_definitions()
    _create_jobs()
    _create_step_attempts()
    _create_job_events()
    _create_outbox()


def downgrade() -> None:
    """Drop everything :func:`upgrade` created."""
    op.drop_table("outbox")
    op.drop_table("job_events")
    op.drop_table("step_attempts")
    op.drop_table("jobs")
    op.drop_table("workflow_definitions")


def _create_workflow_definitions() -> None:
    op.create_table(
        "workflow_definitions",
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        _jsonb("definition"),
        _created_at(),
        sa.PrimaryKeyConstraint("content_hash", name="pk_workflow_definitions"),
    )


def _create_jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("workflow_name", sa.Text(), nullable=False),
        sa.Column("workflow_version", sa.Text(), nullable=False),
        sa.Column("workflow_hash", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        _jsonb("params"),
        _jsonb("outputs"),
        _jsonb("crashes"),
        _jsonb("error", nullable=True),
        sa.Column("current_step", sa.Text(), nullable=True),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("finished_at"),
        _ts("deadline_at"),
        sa.Column("run", sa.Integer(), nullable=False, server_default=sa.text("1")),
        _ts("wake_at"),
        sa.Column("last_seq", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("job_id", name="pk_jobs"),
        sa.ForeignKeyConstraint(
            ["workflow_hash"],
            ["workflow_definitions.content_hash"],
            name="fk_jobs_workflow_hash_workflow_definitions",
        ),
        sa.CheckConstraint(_in("status", JOB_STATUSES), name="ck_jobs_status"),
    )
    op.create_index(
        "ix_jobs_wake_at",
        "jobs",
        ["wake_at"],
        postgresql_where=sa.text("wake_at IS NOT NULL"),
    )
    op.create_index("ix_jobs_status_updated_at", "jobs", ["status", "updated_at"])
    op.create_index("ix_jobs_reference", "jobs", ["reference"])


def _create_step_attempts() -> None:
    op.create_table(
        "step_attempts",
        sa.Column("attempt_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("due_at"),
        _ts("dispatched_at"),
        _ts("started_at"),
        _ts("finished_at"),
        _ts("last_seen_at"),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("run", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("progress", sa.Double(), nullable=True),
        sa.Column("progress_message", sa.Text(), nullable=True),
        _jsonb("output", nullable=True),
        _jsonb("error", nullable=True),
        sa.Column("item_index", sa.Integer(), nullable=True),
        sa.Column("iteration", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.PrimaryKeyConstraint("attempt_id", name="pk_step_attempts"),
        sa.UniqueConstraint("job_id", "ordinal", name="uq_step_attempts_job_id_ordinal"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.job_id"], name="fk_step_attempts_job_id_jobs", ondelete="CASCADE"
        ),
        sa.CheckConstraint(_in("status", ATTEMPT_STATUSES), name="ck_step_attempts_status"),
    )


def _create_job_events() -> None:
    op.create_table(
        "job_events",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        _jsonb("data"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("job_id", "seq", name="pk_job_events"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.job_id"], name="fk_job_events_job_id_jobs", ondelete="CASCADE"
        ),
    )


def _create_outbox() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "headers", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("priority", sa.SmallInteger(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])
