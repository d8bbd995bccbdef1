"""Hardening: job secrets and owners, update sequence numbers, bounded progress
history, cancels that arrive before their submission, quarantined outbox rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

- ``jobs.secret``: the random secret attempt ids and tokens derive from (NULL
  for jobs submitted before: their attempt ids stay derived from the job id).
- ``jobs.owner``: the RabbitMQ user that submitted the job (validated
  ``user_id``), NULL when the submission carried none.
- ``jobs.update_seq``: the sequence number of the job's latest update.
- ``step_attempts.progress_records``: progress history rows written for it.
- ``pending_cancels``: cancels of jobs not submitted yet.
- ``outbox.failures`` / ``last_error`` / ``quarantined_at``: rows the broker
  keeps refusing are set aside with the reason; ``outbox.mandatory``: the
  message must reach a queue (tasks), else it counts as refused.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the columns (nullable or with defaults: existing rows stay valid) and the table."""
    op.add_column("jobs", sa.Column("secret", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("owner", sa.Text(), nullable=True))
    op.add_column(
        "jobs", sa.Column("update_seq", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column(
        "step_attempts",
        sa.Column("progress_records", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "pending_cancels",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=True),
        sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_pending_cancels"),
    )
    op.create_index("ix_pending_cancels_created_at", "pending_cancels", ["created_at"])
    op.add_column(
        "outbox", sa.Column("failures", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("outbox", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column(
        "outbox",
        sa.Column("mandatory", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("outbox", sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    op.drop_column("outbox", "quarantined_at")
    op.drop_column("outbox", "mandatory")
    op.drop_column("outbox", "last_error")
    op.drop_column("outbox", "failures")
    op.drop_index("ix_pending_cancels_created_at", table_name="pending_cancels")
    op.drop_table("pending_cancels")
    op.drop_column("step_attempts", "progress_records")
    op.drop_column("jobs", "update_seq")
    op.drop_column("jobs", "owner")
    op.drop_column("jobs", "secret")
