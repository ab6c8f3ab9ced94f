"""Indexes for the current-status rule, the subscribe reservation and the supersession audit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both follow the rule's order exactly, so "current" is one index descent per entity.
    op.execute(
        "CREATE INDEX ix_subscription_status_history_current ON subscription_status_history "
        "(subscription_id, effect_date DESC, create_date DESC NULLS LAST, id DESC) "
        "INCLUDE (status_id)"
    )
    op.execute(
        "CREATE INDEX ix_club_status_history_current ON club_status_history "
        "(club_id, effect_date DESC, create_date DESC NULLS LAST, id DESC) "
        "INCLUDE (club_status_id)"
    )
    op.create_index(
        "ix_subscription_club_customer", "subscription", ["club_id", "customer_store_id"]
    )
    op.create_table(
        "subscription_claim",
        sa.Column("club_id", sa.Integer, primary_key=True),
        sa.Column("customer_store_id", sa.String(36), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.String(36),
            sa.ForeignKey(
                "subscription.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.text("now()")),
    )
    op.create_index("ix_subscription_claim_subscription", "subscription_claim", ["subscription_id"])
    op.create_table(
        "superseded_status_change",
        sa.Column("audit_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("history_id", sa.String(36), nullable=False),
        sa.Column("subscription_id", sa.String(36)),
        sa.Column("status_id", sa.Integer),
        sa.Column("effect_date", sa.DateTime),
        sa.Column("create_date", sa.DateTime),
        sa.Column("details", sa.String(256)),
        sa.Column("superseded_at", sa.DateTime, nullable=False),
        sa.Column("superseded_by", sa.String(36)),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_superseded_status_change_subscription", "superseded_status_change", ["subscription_id"]
    )


def downgrade() -> None:
    op.drop_table("superseded_status_change")
    op.drop_table("subscription_claim")
    op.drop_index("ix_subscription_club_customer", table_name="subscription")
    op.drop_index("ix_club_status_history_current", table_name="club_status_history")
    op.drop_index(
        "ix_subscription_status_history_current", table_name="subscription_status_history"
    )
