"""Retained progress and queue positions: no schema change.

- Retained progress: ``step_attempts.progress_records`` (0003) now counts the
  progress reports an attempt received; which of them become history entries
  is a pure rule of the engine (:mod:`segue.engine.progress`).
- Queue positions and ETAs are read with the indexes the write path keeps
  anyway (:mod:`segue.store.queueing`): an index for them would slow every
  attempt write for a query made only when someone asks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change."""


def downgrade() -> None:
    """Nothing to change."""
