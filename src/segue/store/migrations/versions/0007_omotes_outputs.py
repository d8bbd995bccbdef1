"""The output ESDLs of OMOTES tasks, kept apart from the step outputs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Written by hand, as a frozen snapshot (see 0001).

- ``omotes_outputs``: the output ESDL (UTF-8 bytes, as the worker sent it) of
  each step attempt an OMOTES Celery worker finished, by job and attempt. The
  Celery bridge writes it before it reports the step succeeded; the step
  output carries only a reference, so an ESDL of many megabytes fits no
  message or output limit. Rows go with their job (``ON DELETE CASCADE``:
  retention) and when an OMOTES client deletes the job.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "omotes_outputs",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("attempt_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("esdl", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("job_id", "attempt_id", name="pk_omotes_outputs"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.job_id"], name="fk_omotes_outputs_job_id_jobs", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_table("omotes_outputs")
