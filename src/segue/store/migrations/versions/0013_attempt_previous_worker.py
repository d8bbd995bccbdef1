"""The worker a running attempt was taken from.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

A redelivered ``started`` moves a running attempt to the worker that sent it,
on the belief that the broker gave it the task because the holder went away.
With a task delivered twice, the holder may well be alive and finish: its
result is still applied, so ``previous_worker_id`` keeps who that was.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column."""
    op.add_column("step_attempts", sa.Column("previous_worker_id", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    op.drop_column("step_attempts", "previous_worker_id")
