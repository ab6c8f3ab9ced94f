"""The money path: exactly once whatever order events arrive in.

- platform_request: every request id we ever send to the platform, with what it charges
  (kind 'charge', subject "<subscription_id>:<period>"); a request id belongs to one
  subject forever. Backfilled from charge and charge_attempt (the oldest use wins).
- charge: the state 'error' (the platform refused us, or the request was never sent: no
  order exists, the same id is retried, it never counts towards cancellation);
  declined_at (the first decline, which opens the retry window), paid_request_id (the
  order that paid the period) and outcome_at (when the platform says the last applied
  outcome happened). Backfilled: failed and abandoned rows get declined_at as the old
  window opened (the later of billing date and first attempt), succeeded rows their
  request id as paid_request_id.
- charge_anomaly: double charges, reversals (a failure after a success of the same
  order) and payments that arrived after the period was abandoned; for review, never
  hidden. No foreign key: the record outlives the ledger row.
- billing_schedule: changed_at, previous_interval, previous_anniversary, set by a trigger
  on every INSERT or change of interval/anniversary (plain SQL keeps working); the new
  schedule takes effect at its first boundary after the previous schedule's period that
  held the change. Existing rows: changed_at = updated_at, previous = monthly calendar.
- billing_hold: cancellations the billing run's breaker held back until an operator
  releases them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATES = "'pending', 'succeeded', 'failed', 'unknown', 'abandoned'"

SCHEDULE_TRIGGER = """
CREATE FUNCTION billing_schedule_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.changed_at := coalesce(NEW.changed_at, now() AT TIME ZONE 'utc');
  ELSIF (NEW.interval, NEW.anniversary) IS DISTINCT FROM (OLD.interval, OLD.anniversary)
        AND NEW.changed_at IS NOT DISTINCT FROM OLD.changed_at THEN
    NEW.changed_at := now() AT TIME ZONE 'utc';
    NEW.previous_interval := OLD.interval;
    NEW.previous_anniversary := OLD.anniversary;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER billing_schedule_changed BEFORE INSERT OR UPDATE ON billing_schedule
  FOR EACH ROW EXECUTE FUNCTION billing_schedule_changed();
"""


def upgrade() -> None:
    op.create_table(
        "platform_request",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.execute(
        """
        INSERT INTO platform_request (request_id, kind, subject, created_at)
        SELECT DISTINCT ON (request_id) request_id, 'charge', subject, created_at FROM (
            SELECT request_id, subscription_id || ':' || period AS subject,
                   coalesce(created_at, now() AT TIME ZONE 'utc') AS created_at
            FROM charge WHERE request_id IS NOT NULL
            UNION ALL
            SELECT a.request_id, c.subscription_id || ':' || c.period,
                   coalesce(a.started_at, c.created_at, now() AT TIME ZONE 'utc')
            FROM charge_attempt a JOIN charge c ON c.id = a.charge_id
            WHERE a.request_id IS NOT NULL
        ) used
        WHERE subject IS NOT NULL
        ORDER BY request_id, created_at
        """
    )

    op.drop_constraint("ck_charge_state", "charge", type_="check")
    op.create_check_constraint("ck_charge_state", "charge", f"state IN ({STATES}, 'error')")
    op.add_column("charge", sa.Column("declined_at", sa.DateTime))
    op.add_column("charge", sa.Column("paid_request_id", sa.String(36)))
    op.add_column("charge", sa.Column("outcome_at", sa.DateTime))
    op.execute(
        """
        UPDATE charge SET declined_at = greatest(coalesce(billing_date, created_at), created_at)
        WHERE state IN ('failed', 'abandoned') AND declined_at IS NULL;
        UPDATE charge SET paid_request_id = request_id
        WHERE state = 'succeeded' AND paid_request_id IS NULL;
        """
    )
    op.create_index(
        "ix_charge_unsettled",
        "charge",
        ["subscription_id"],
        postgresql_where=sa.text("state IN ('pending', 'failed', 'unknown', 'error')"),
    )

    op.create_table(
        "charge_anomaly",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("charge_id", sa.BigInteger),
        sa.Column("subscription_id", sa.String(36)),
        sa.Column("period", sa.String(16)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("paid_request_id", sa.String(64)),
        sa.Column("event_id", sa.String(128)),
        sa.Column("detected_at", sa.DateTime, nullable=False),
        sa.Column("detected_by", sa.String(128), nullable=False),
        sa.Column("details", sa.Text),
        sa.Column("resolved_at", sa.DateTime),
        sa.Column("resolution", sa.Text),
        sa.UniqueConstraint("kind", "charge_id", "request_id", name="uq_charge_anomaly"),
    )
    op.create_index(
        "ix_charge_anomaly_open", "charge_anomaly", ["id"], postgresql_where="resolved_at IS NULL"
    )

    op.add_column("billing_schedule", sa.Column("changed_at", sa.DateTime))
    op.add_column("billing_schedule", sa.Column("previous_interval", sa.String(16)))
    op.add_column("billing_schedule", sa.Column("previous_anniversary", sa.Boolean))
    op.execute("UPDATE billing_schedule SET changed_at = updated_at WHERE changed_at IS NULL")
    op.execute(SCHEDULE_TRIGGER)

    op.create_table(
        "billing_hold",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("held_at", sa.DateTime, nullable=False),
        sa.Column("released_at", sa.DateTime),
        sa.Column("released_by", sa.String(128)),
    )
    op.create_index(
        "uq_billing_hold_open",
        "billing_hold",
        ["subscription_id", "period"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("billing_hold")
    op.execute("DROP TRIGGER billing_schedule_changed ON billing_schedule")
    op.execute("DROP FUNCTION billing_schedule_changed()")
    op.drop_column("billing_schedule", "previous_anniversary")
    op.drop_column("billing_schedule", "previous_interval")
    op.drop_column("billing_schedule", "changed_at")
    op.drop_table("charge_anomaly")
    op.drop_index("ix_charge_unsettled", "charge")
    op.drop_column("charge", "outcome_at")
    op.drop_column("charge", "paid_request_id")
    op.drop_column("charge", "declined_at")
    op.execute("UPDATE charge SET state = 'unknown' WHERE state = 'error'")
    op.drop_constraint("ck_charge_state", "charge", type_="check")
    op.create_check_constraint("ck_charge_state", "charge", f"state IN ({STATES})")
    op.drop_table("platform_request")
