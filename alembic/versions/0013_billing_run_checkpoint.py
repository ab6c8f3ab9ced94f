"""billing_run: the daily billing run's checkpoint, so a run cut off halfway resumes.

One row per run (the UTC day it plans for): the instant every invocation of that run
plans with, the last subscription id up to which everything due was queued (and
acknowledged by SQS), counters, the lease of the invocation holding the run, and when it
finished. No foreign keys: it never blocks deleting a subscription or TRUNCATE CASCADE.

Revision ID: 0013
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa

from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_run",
        sa.Column("run_date", sa.Date, primary_key=True),
        sa.Column("planned_at", sa.DateTime, nullable=False),
        sa.Column("last_queued_id", sa.String(36)),
        sa.Column("queued", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("settled", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("invocations", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )


def downgrade() -> None:
    op.drop_table("billing_run")
