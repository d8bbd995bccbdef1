"""Who the jobs of a schedule belong to.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

``owner`` is the RabbitMQ user each job the schedule submits belongs to, as
``jobs.owner`` is for a client's submission: only that user and the admins may
cancel, retry or read the jobs. NULL, as for every schedule stored before:
the jobs have no owner and are open to every user.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column."""
    op.add_column("schedules", sa.Column("owner", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    op.drop_column("schedules", "owner")
