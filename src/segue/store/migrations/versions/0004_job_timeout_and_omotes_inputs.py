"""A job's own timeout, and the inputs of OMOTES jobs that are not parameters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

- ``jobs.timeout_s``: the job's own time limit, when its submission set one
  tighter than its workflow's (NULL: the workflow's, if any).
- ``omotes_inputs``: what an OMOTES submission carries besides its parameters
  (the input ESDL), kept by the OMOTES adapter for the task it dispatches;
  retention deletes rows whose job is gone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column (NULL for existing jobs) and the table."""
    op.add_column("jobs", sa.Column("timeout_s", sa.Double(), nullable=True))
    op.create_table(
        "omotes_inputs",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("esdl", sa.Text(), nullable=False),
        sa.Column("job_reference", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_omotes_inputs"),
    )
    op.create_index("ix_omotes_inputs_created_at", "omotes_inputs", ["created_at"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_omotes_inputs_created_at", table_name="omotes_inputs")
    op.drop_table("omotes_inputs")
    op.drop_column("jobs", "timeout_s")
