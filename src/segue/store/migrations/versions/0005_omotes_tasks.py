"""The Celery tasks the OMOTES bridge dispatched and has not seen the end of.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

- ``omotes_tasks``: one row per step attempt handed to an OMOTES Celery worker
  (the Celery task id is the attempt id), with what the bridge needs to report
  the worker's events to Segue (the job, the attempt's token) and how often the
  task started (a second start is a redelivery after a worker died). Deleted
  when the task's result arrives or the attempt is stopped; rows of attempts
  that ended otherwise are pruned by the bridge.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "omotes_tasks",
        sa.Column("attempt_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("task_type", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("heartbeat_s", sa.Double(), nullable=True),
        sa.Column("starts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("attempt_id", name="pk_omotes_tasks"),
    )
    op.create_index("ix_omotes_tasks_created_at", "omotes_tasks", ["created_at"])


def downgrade() -> None:
    """Drop it again."""
    op.drop_index("ix_omotes_tasks_created_at", table_name="omotes_tasks")
    op.drop_table("omotes_tasks")
