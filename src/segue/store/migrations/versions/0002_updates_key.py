"""Jobs remember where their submitter receives updates (``jobs.updates_key``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable column: existing jobs have no submitter key."""
    op.add_column("jobs", sa.Column("updates_key", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the column again."""
    op.drop_column("jobs", "updates_key")
