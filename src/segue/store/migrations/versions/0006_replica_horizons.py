"""Each orchestrator replica's events horizon, so the sweepers judge deadlines by
the slowest of them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

A replica knows only the worker events it holds itself; events another replica
has taken but not handled yet (after a pause, or a database restart) could still
move a deadline. Every replica writes its horizon here before each sweep, and
the sweepers take the earliest of those written recently.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "replica_horizons",
        sa.Column("replica_id", sa.Text(), nullable=False),
        sa.Column("horizon", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("replica_id", name="pk_replica_horizons"),
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_table("replica_horizons")
