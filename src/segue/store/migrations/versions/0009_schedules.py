"""Recurring jobs: schedules.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

One row per schedule: what to submit (workflow, params, priority), when (a cron
expression in a time zone, and ``next_due_at``, the next moment it fires) and
what it did last. ``source`` says where it was defined: the workflow file
(``definition_hash`` then fingerprints that definition, so a restart with an
unchanged file leaves the row alone) or ``segue schedules add``. The partial
index serves the scheduler's query for due schedules.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    """Create the table and its index."""
    op.create_table(
        "schedules",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("workflow", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False, server_default=sa.text("'UTC'")),
        sa.Column(
            "params",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("5")),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        _ts("next_due_at", nullable=False),
        _ts("last_due_at"),
        _ts("last_fired_at"),
        sa.Column("last_job_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("definition_hash", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_schedules"),
        sa.CheckConstraint("source IN ('file', 'cli')", name="ck_schedules_source"),
        sa.CheckConstraint("priority BETWEEN 0 AND 9", name="ck_schedules_priority"),
    )
    op.create_index(
        "ix_schedules_next_due_at",
        "schedules",
        ["next_due_at"],
        postgresql_where=sa.text("enabled"),
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_schedules_next_due_at", table_name="schedules")
    op.drop_table("schedules")
