"""Indexes for listing jobs (``segue jobs list`` and the web page).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Written by hand, as a frozen snapshot (see 0001).

Jobs are listed newest first, ``ORDER BY created_at DESC, job_id DESC``, a page
at a time by keyset (``(created_at, job_id) < (cursor)``), optionally filtered.
Each index below lets one filter walk the jobs in that order and stop after a
page, so a page costs the same with a thousand jobs or a million
(docs/operator.md shows the plans):

- ``(created_at, job_id)``: no filter, or only a time window.
- ``(status, …)``, ``(workflow_name, …)``, ``(current_step, …)``: one status
  (several: one ordered scan each, merged), one workflow, one step.
- ``(owner, …)`` where ``owner IS NOT NULL``: one submitter.
- a trigram (``pg_trgm``) GIN index on ``kind: message`` of the job's error,
  for jobs with an error only: substring search (``ILIKE '%text%'``).

``pg_trgm`` ships with PostgreSQL (contrib) and is a trusted extension: the
owner of the database may create it. Each index is created only if missing, so
an operator with a large, busy ``jobs`` table can build them beforehand with
``CREATE INDEX CONCURRENTLY`` (same names and definitions) and the upgrade is
then instant (docs/operator.md).
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ORDERED_BY = ["created_at", "job_id"]
ERROR_TEXT = "((error ->> 'kind') || ': ' || (error ->> 'message'))"


def upgrade() -> None:
    """Create the extension and the indexes."""
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index("ix_jobs_created_at_job_id", "jobs", ORDERED_BY, if_not_exists=True)
    for column in ("status", "workflow_name", "current_step"):
        op.create_index(
            f"ix_jobs_{column}_created_at_job_id", "jobs", [column, *ORDERED_BY], if_not_exists=True
        )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_owner_created_at_job_id"
        " ON jobs (owner, created_at, job_id) WHERE owner IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_error_text ON jobs"
        f" USING gin ({ERROR_TEXT} gin_trgm_ops) WHERE error IS NOT NULL"
    )


def downgrade() -> None:
    """Drop the indexes (the extension stays: something else may use it)."""
    for name in (
        "ix_jobs_error_text",
        "ix_jobs_owner_created_at_job_id",
        "ix_jobs_current_step_created_at_job_id",
        "ix_jobs_workflow_name_created_at_job_id",
        "ix_jobs_status_created_at_job_id",
        "ix_jobs_created_at_job_id",
    ):
        op.drop_index(name, table_name="jobs")
