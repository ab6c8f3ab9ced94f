"""Club changes: a member moving from one club to another at a period boundary (or now).

`club_change` links the two subscriptions of one change: the one that is left (its
scheduled CANCELLED history row) and the one that is joined (its scheduled ACTIVE row, on a
subscription created for the change or on the customer's earlier one in that club). The
state is `scheduled` or `cancelled`; `applied` is never stored: a scheduled change whose
effective instant has passed is applied, by the current-status rule alone.

No foreign keys: a change is a record that must never block deleting a subscription, a
club or a history row, nor `TRUNCATE ... CASCADE` of the approved tables.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "club_change",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("club_id", sa.Integer),
        sa.Column("target_subscription_id", sa.String(36), nullable=False),
        sa.Column("target_club_id", sa.Integer, nullable=False),
        sa.Column("customer_store_id", sa.String(36)),
        sa.Column("when_mode", sa.String(16), nullable=False),
        sa.Column("effective_at", sa.DateTime, nullable=False),
        sa.Column("reactivated", sa.Boolean, nullable=False),
        sa.Column("cancel_row_id", sa.String(36), nullable=False),
        sa.Column("activate_row_id", sa.String(36), nullable=False),
        # History rows of both subscriptions once the change was written: a different count
        # while it is pending means a row was written (or removed) outside the API.
        sa.Column("history_rows", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("cancelled_at", sa.DateTime),
        sa.Column("cancel_reason", sa.Text),
        # When the billing run recorded club_change_applied (NULL: not yet).
        sa.Column("applied_recorded_at", sa.DateTime),
        sa.CheckConstraint("state IN ('scheduled', 'cancelled')", name="ck_club_change_state"),
        sa.CheckConstraint("when_mode IN ('next_period', 'now')", name="ck_club_change_when"),
    )
    op.create_index("ix_club_change_subscription", "club_change", ["subscription_id"])
    op.create_index("ix_club_change_target", "club_change", ["target_subscription_id"])
    # The sweeps read only scheduled changes: pending ones, and applied ones not yet recorded.
    op.create_index(
        "ix_club_change_scheduled",
        "club_change",
        ["effective_at"],
        postgresql_where=sa.text("state = 'scheduled'"),
    )
    op.create_index(
        "ix_club_change_unrecorded",
        "club_change",
        ["effective_at"],
        postgresql_where=sa.text("state = 'scheduled' AND applied_recorded_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("club_change")
