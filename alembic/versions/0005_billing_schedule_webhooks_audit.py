"""Billing that runs itself: schedules per club, the final ledger state, webhooks, audit.

- billing_schedule: optional, one row per club (no row: monthly calendar billing).
- charge: the state 'abandoned' (retry window closed), the period's billing date and
  the reason the platform gave for a failure.
- charge_refund: refunds recorded against the charge.
- webhook_event: every event received, by its unique id (deduplication), with events
  that could not be applied yet kept as 'pending'.
- card_unavailable: customers whose card the platform reported expired or cancelled.
- billing_audit: append-only (a trigger refuses UPDATE and DELETE; TRUNCATE stays
  possible for tests and operators) and without foreign keys, so it outlives what it
  describes and never blocks deleting a subscription or a club.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATES = "'pending', 'succeeded', 'failed', 'unknown'"


def upgrade() -> None:
    op.create_table(
        "billing_schedule",
        sa.Column(
            "club_id",
            sa.Integer,
            sa.ForeignKey("club.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("interval", sa.String(16), nullable=False, server_default="monthly"),
        sa.Column("anniversary", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column(
            "updated_at",
            sa.DateTime,
            nullable=False,
            server_default=sa.text("(now() AT TIME ZONE 'utc')"),
        ),
        sa.CheckConstraint(
            "interval IN ('monthly', 'quarterly', 'annual')", name="ck_billing_schedule_interval"
        ),
    )

    op.drop_constraint("ck_charge_state", "charge", type_="check")
    op.create_check_constraint("ck_charge_state", "charge", f"state IN ({STATES}, 'abandoned')")
    op.add_column("charge", sa.Column("billing_date", sa.DateTime))
    op.add_column("charge", sa.Column("failure_reason", sa.Text))
    op.create_index("ix_charge_request_id", "charge", ["request_id"])
    op.create_index("ix_charge_attempt_request_id", "charge_attempt", ["request_id"])
    op.create_index(
        "ix_charge_open", "charge", ["period"], postgresql_where=sa.text("state <> 'succeeded'")
    )

    op.create_table(
        "charge_refund",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "charge_id",
            sa.BigInteger,
            sa.ForeignKey("charge.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("event_id", sa.String(128), nullable=False, unique=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("reason", sa.Text),
        sa.Column("refunded_at", sa.DateTime),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )

    op.create_table(
        "webhook_event",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("customer_store_id", sa.String(36)),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("applied_at", sa.DateTime),
        sa.Column("note", sa.Text),
        sa.CheckConstraint("state IN ('applied', 'pending')", name="ck_webhook_event_state"),
    )
    op.create_index(
        "ix_webhook_event_pending",
        "webhook_event",
        ["request_id"],
        postgresql_where=sa.text("state = 'pending'"),
    )

    op.create_table(
        "card_unavailable",
        sa.Column("customer_store_id", sa.String(36), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("reported_at", sa.DateTime, nullable=False),
        sa.Column("event_id", sa.String(128)),
    )

    op.create_table(
        "billing_audit",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("subscription_id", sa.String(36)),
        sa.Column("customer_store_id", sa.String(36)),
        sa.Column("period", sa.String(16)),
        sa.Column("charge_id", sa.BigInteger),
        sa.Column("request_id", sa.String(64)),
        sa.Column("details", sa.Text),
    )
    op.create_index("ix_billing_audit_subscription", "billing_audit", ["subscription_id", "id"])
    op.create_index("ix_billing_audit_customer", "billing_audit", ["customer_store_id", "id"])
    op.execute(
        """
        CREATE FUNCTION billing_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'billing_audit is append-only';
        END $$;
        CREATE TRIGGER billing_audit_append_only BEFORE UPDATE OR DELETE ON billing_audit
          FOR EACH ROW EXECUTE FUNCTION billing_audit_append_only();
        """
    )


def downgrade() -> None:
    op.drop_table("billing_audit")
    op.execute("DROP FUNCTION billing_audit_append_only()")
    op.drop_table("card_unavailable")
    op.drop_table("webhook_event")
    op.drop_table("charge_refund")
    op.drop_index("ix_charge_open", "charge")
    op.drop_index("ix_charge_attempt_request_id", "charge_attempt")
    op.drop_index("ix_charge_request_id", "charge")
    op.drop_column("charge", "failure_reason")
    op.drop_column("charge", "billing_date")
    op.execute("UPDATE charge SET state = 'failed' WHERE state = 'abandoned'")
    op.drop_constraint("ck_charge_state", "charge", type_="check")
    op.create_check_constraint("ck_charge_state", "charge", f"state IN ({STATES})")
    op.drop_table("billing_schedule")
