"""The charge ledger: one row per subscription and billing period, and every attempt.

No foreign key to subscription: a record of money must outlive the subscription row,
and must never block an operator deleting one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charge",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("customer_store_id", sa.String(36)),
        sa.Column("store_sku", sa.Integer),
        sa.Column("platform_status", sa.Integer),
        sa.Column("platform_body", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("last_attempt_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("subscription_id", "period", name="uq_charge_subscription_period"),
        sa.CheckConstraint(
            "state IN ('pending', 'succeeded', 'failed', 'unknown')", name="ck_charge_state"
        ),
    )
    op.create_table(
        "charge_attempt",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "charge_id",
            sa.BigInteger,
            sa.ForeignKey("charge.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("outcome", sa.String(16)),
        sa.Column("platform_status", sa.Integer),
        sa.Column("platform_body", sa.Text),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("charge_id", "attempt", name="uq_charge_attempt"),
    )


def downgrade() -> None:
    op.drop_table("charge_attempt")
    op.drop_table("charge")
