"""When a replica last saw the events queue drained: what releases a silent
replica's horizon.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

A replica that stops writing its horizon (frozen, killed, cut off) may still
hold worker events, or have had them given back to the queue, from where they
reach the others only later. Its last horizon keeps holding the others'
deadlines back until some replica saw the events queue with nothing ready and
no consumer beyond the replicas heard from (``drained_at``), after the silent
one went quiet: then its events have reached a replica that speaks for them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column."""
    op.add_column(
        "replica_horizons", sa.Column("drained_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_column("replica_horizons", "drained_at")
