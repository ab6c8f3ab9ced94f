"""The operators' desk: views that answer "what is true now", and the stored forecasts.

Views (read-only; they never change what plain SQL may write to any table):
- `club_now`: each club, its SKU, current status by name, since when, the next
  scheduled change.
- `subscription_now`: each subscription with its club, customer, current status, since,
  the next scheduled change, eligible yes/no and why not, the current period, and every
  unpaid period still inside its retry window with its ledger state and when it closes.
- `member_timeline`: everything that happened to a subscription, one row per event.

Every status comes from the current-status rule of spec/data-model.md, as
repositories/status_rule.py writes it (greatest effect_date <= T, then create_date NULLS
LAST, then id; NULL dates never count), one index descent per entity through the
indexes of revision 0002. The instant T is `operator_now()`: the database's clock in UTC,
or the session setting `ops.at` when an operator sets it (`SET ops.at = '2026-12-01
06:00'` shows the views as they will be then, assuming nothing else is written).

The cache of revision 0004 is not read: it pays off when the eligible endpoint walks a
million ACTIVE rows in id order, while a view row is one descent of the same covering
index the cache would save, plus checks of the dirty list that cost as much.

Tables (no foreign keys: a forecast outlives the rows it describes, and never blocks a
delete or a TRUNCATE ... CASCADE of the approved tables):
- `billing_forecast_run`: one row per forecast instant: when computed, the per-club
  summary, and, once the run at that instant has happened, what it actually did.
- `billing_forecast`: the forecast's details, one row per (instant, subscription,
  period).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OPERATOR_NOW = """
CREATE FUNCTION operator_now() RETURNS timestamp LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('ops.at', true), '')::timestamp,
                    now() AT TIME ZONE 'utc')
$$
"""

# The retry window of the billing run (BILLING_RETRY_DAYS, 5 days by default); a session
# may set `ops.retry_days` when the deployment uses another value.
RETRY_WINDOW = """
CREATE FUNCTION operator_retry_window() RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT make_interval(secs => 86400 *
        coalesce(nullif(current_setting('ops.retry_days', true), '')::float8, 5))
$$
"""

# domain/schedules.py in SQL (tests compare them): calendar periods, or anniversary
# cycles whose day clamps to the month's last day (date + interval does exactly that).
PERIOD_KEY = """
CREATE FUNCTION billing_period_key(interval_name varchar, anniversary boolean,
                                   anchor timestamp, at timestamp)
RETURNS varchar LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    step integer := CASE interval_name WHEN 'quarterly' THEN 3 WHEN 'annual' THEN 12
                    ELSE 1 END;
    months integer;
    cycles integer;
    billed date;
BEGIN
    IF at IS NULL THEN
        RETURN NULL;
    END IF;
    IF coalesce(anniversary, false) AND anchor IS NOT NULL THEN
        months := (extract(year FROM at)::int * 12 + extract(month FROM at)::int)
                - (extract(year FROM anchor)::int * 12 + extract(month FROM anchor)::int);
        cycles := greatest(floor(months::numeric / step)::int, 0);
        billed := (anchor::date + make_interval(months => cycles * step))::date;
        IF billed > at::date AND cycles > 0 THEN
            billed := (anchor::date + make_interval(months => (cycles - 1) * step))::date;
        END IF;
        RETURN to_char(billed, 'YYYY-MM-DD');
    END IF;
    IF step = 12 THEN
        RETURN to_char(at, 'YYYY');
    ELSIF step = 3 THEN
        RETURN to_char(at, 'YYYY') || '-Q' || to_char(at, 'Q');
    END IF;
    RETURN to_char(at, 'YYYY-MM');
END $$
"""


def _current(table: str, entity: str, status: str, key: str) -> str:
    """The rule's counting row of one entity at operator_now() (a LATERAL body)."""
    return f"""
        SELECT h.{status} AS status_id, h.effect_date, h.create_date, h.id
        FROM {table} h
        WHERE h.{entity} = {key} AND h.effect_date <= operator_now()
        ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC
        LIMIT 1"""


def _next(table: str, entity: str, status: str, key: str) -> str:
    """The next scheduled change: the row the rule will pick at the earliest future date."""
    return f"""
        SELECT h.{status} AS status_id, h.effect_date, h.details
        FROM {table} h
        WHERE h.{entity} = {key} AND h.effect_date > operator_now()
        ORDER BY h.effect_date, h.create_date DESC NULLS LAST, h.id DESC
        LIMIT 1"""


CLUB_NOW = f"""
CREATE VIEW club_now AS
SELECT c.id AS club_id,
       c.name AS club,
       c.store_sku AS sku,
       cur.status_id,
       cs.name AS status,
       cur.effect_date AS since,
       nxt.status_id AS next_status_id,
       ncs.name AS next_status,
       nxt.effect_date AS next_change_at,
       coalesce(bs.interval, 'monthly') AS billing_interval,
       coalesce(bs.anniversary, false) AS anniversary
FROM club c
LEFT JOIN LATERAL ({_current("club_status_history", "club_id", "club_status_id", "c.id")}
) cur ON true
LEFT JOIN LATERAL ({_next("club_status_history", "club_id", "club_status_id", "c.id")}
) nxt ON true
LEFT JOIN club_status cs ON cs.id = cur.status_id
LEFT JOIN club_status ncs ON ncs.id = nxt.status_id
LEFT JOIN billing_schedule bs ON bs.club_id = c.id
"""

# Unpaid: a ledger row neither succeeded nor abandoned (the money path of revision 0007,
# docs/money-path.md). Only a decline (state failed) has a retry window: it opens at the
# first decline (declined_at, backfilled by 0007) and the row is listed until it closes.
# A row the platform failed on (error), in flight (pending) or without a known outcome
# (unknown) has no window: it is listed with window_closes_at null (retried until its
# period ends, or settled by reconciliation). A card report counts only for the
# subscriptions created before it (as billing reads it).
SUBSCRIPTION_NOW = f"""
CREATE VIEW subscription_now AS
SELECT s.id AS subscription_id,
       s.club_id,
       club.club,
       club.status AS club_status,
       club.sku,
       s.customer_store_id,
       s.create_date,
       cur.status_id,
       st.name AS status,
       cur.effect_date AS since,
       nxt.status_id AS next_status_id,
       nst.name AS next_status,
       nxt.effect_date AS next_change_at,
       nxt.details AS next_change_details,
       (why.reason IS NULL) AS eligible,
       why.reason AS not_eligible_because,
       cu.reason AS card_unavailable,
       billing_period_key(club.billing_interval, club.anniversary, s.create_date,
                          operator_now()) AS current_period,
       coalesce(unpaid.periods, '[]'::jsonb) AS unpaid_periods
FROM subscription s
LEFT JOIN club_now club ON club.club_id = s.club_id
LEFT JOIN LATERAL ({_current("subscription_status_history", "subscription_id", "status_id", "s.id")}
) cur ON true
LEFT JOIN LATERAL ({_next("subscription_status_history", "subscription_id", "status_id", "s.id")}
) nxt ON true
LEFT JOIN status st ON st.id = cur.status_id
LEFT JOIN status nst ON nst.id = nxt.status_id
LEFT JOIN card_unavailable cu ON cu.customer_store_id = s.customer_store_id
      AND cu.reported_at >= s.create_date
LEFT JOIN LATERAL (
    SELECT CASE
        WHEN cur.status_id IS NULL THEN 'it has no current status'
        WHEN cur.status_id <> 1 THEN 'its status is ' || coalesce(st.name, cur.status_id::text)
        WHEN club.status_id IS NULL THEN 'its club is without status'
        WHEN club.status_id NOT IN (1, 2) THEN 'its club is ' || club.status
        WHEN coalesce(s.customer_store_id, '') = '' THEN 'it has no customer id'
        WHEN club.sku IS NULL THEN 'its club has no store SKU'
    END AS reason
) why ON true
LEFT JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object(
               'period', ch.period,
               'state', ch.state,
               'attempts', ch.attempts,
               'failure_reason', ch.failure_reason,
               'declined_at', ch.declined_at,
               'window_closes_at',
               CASE WHEN ch.state = 'failed'
                    THEN coalesce(ch.declined_at, ch.created_at) + operator_retry_window()
               END)
               ORDER BY ch.period) AS periods
    FROM charge ch
    WHERE ch.subscription_id = s.id
      AND (ch.state IN ('pending', 'unknown', 'error')
           OR (ch.state = 'failed'
               AND coalesce(ch.declined_at, ch.created_at) + operator_retry_window()
                   > operator_now()))
) unpaid ON true
"""

# One row per event. `at` is when it took (or takes) effect, `recorded_at` when it was
# written; order by (subscription_id, at, recorded_at, kind_order, ref).
MEMBER_TIMELINE = """
CREATE VIEW member_timeline AS
SELECT h.subscription_id, h.effect_date AS at, h.create_date AS recorded_at, 1 AS kind_order,
       CASE WHEN h.effect_date IS NULL THEN 'status (no date: never counts)'
            WHEN h.effect_date > operator_now() THEN 'status (scheduled)'
            ELSE 'status' END AS kind,
       coalesce(st.name, h.status_id::text) AS what,
       NULL::varchar AS period, h.details::text AS details, h.id::text AS ref
FROM subscription_status_history h
LEFT JOIN status st ON st.id = h.status_id
UNION ALL
SELECT x.subscription_id, x.effect_date, x.superseded_at, 2, 'superseded change',
       coalesce(st.name, x.status_id::text), NULL,
       coalesce(x.details || ' - ', '') || x.reason, x.history_id::text
FROM superseded_status_change x
LEFT JOIN status st ON st.id = x.status_id
UNION ALL
SELECT c.subscription_id, c.created_at, c.updated_at, 3, 'charge', c.state, c.period,
       'attempts ' || c.attempts || coalesce(', HTTP ' || c.platform_status, '')
           || coalesce(', ' || c.failure_reason, ''),
       c.id::text
FROM charge c
UNION ALL
SELECT c.subscription_id, a.started_at, a.finished_at, 4, 'charge attempt',
       coalesce(a.outcome, 'no answer yet'), c.period,
       'attempt ' || a.attempt || coalesce(', HTTP ' || a.platform_status, '')
           || coalesce(', ' || a.error, ''),
       a.request_id
FROM charge_attempt a
JOIN charge c ON c.id = a.charge_id
UNION ALL
SELECT c.subscription_id, coalesce((w.payload->>'occurred_at')::timestamptz
                                   AT TIME ZONE 'utc', w.received_at),
       w.received_at, 5, 'webhook ' || w.type, w.state, c.period,
       coalesce(w.payload->'data'->>'outcome', w.payload->>'outcome', '')
           || coalesce(' ' || w.note, ''),
       w.event_id
FROM charge c
JOIN webhook_event w ON w.request_id IN (
    SELECT a.request_id FROM charge_attempt a WHERE a.charge_id = c.id)
UNION ALL
SELECT s.id, w.received_at, w.received_at, 5, 'webhook ' || w.type, w.state, NULL,
       coalesce(w.payload->'data'->>'reason', w.payload->>'reason', ''),
       w.event_id
FROM webhook_event w
JOIN subscription s ON s.customer_store_id = w.customer_store_id
WHERE w.request_id IS NULL AND w.customer_store_id IS NOT NULL
UNION ALL
SELECT b.subscription_id, b.occurred_at, b.occurred_at, 6, 'audit ' || b.action, b.actor,
       b.period, b.details, b.id::text
FROM billing_audit b
WHERE b.subscription_id IS NOT NULL
"""

VIEWS = ("member_timeline", "subscription_now", "club_now")
FUNCTIONS = (
    "billing_period_key(varchar, boolean, timestamp, timestamp)",
    "operator_retry_window()",
    "operator_now()",
)


def upgrade() -> None:
    for sql in (OPERATOR_NOW, RETRY_WINDOW, PERIOD_KEY, CLUB_NOW, SUBSCRIPTION_NOW):
        op.execute(sql)
    op.execute(MEMBER_TIMELINE)
    # The timeline finds a subscription's webhooks through these (0005 indexes only the
    # pending ones by request id).
    op.create_index("ix_webhook_event_request_id", "webhook_event", ["request_id"])
    op.create_index("ix_webhook_event_customer", "webhook_event", ["customer_store_id"])
    op.create_index("ix_subscription_customer", "subscription", ["customer_store_id"])
    # Each run compares its forecast with what it audited that day.
    op.create_index(
        "ix_billing_audit_run",
        "billing_audit",
        ["occurred_at"],
        postgresql_where=sa.text("actor = 'billing-run'"),
    )

    op.create_table(
        "billing_forecast_run",
        sa.Column("run_at", sa.DateTime, primary_key=True),
        sa.Column("computed_at", sa.DateTime, nullable=False),
        sa.Column("summary", postgresql.JSONB, nullable=False),
        sa.Column("compared_at", sa.DateTime),
        sa.Column("comparison", postgresql.JSONB),
    )
    op.create_table(
        "billing_forecast",
        sa.Column("run_at", sa.DateTime, primary_key=True),
        sa.Column("subscription_id", sa.String(36), primary_key=True),
        sa.Column("club_id", sa.Integer),
        sa.Column("sku", sa.Integer),
        # Part of the key: the money path plans several periods of one subscription in a
        # run (a declined earlier period retried or ended, and the current one).
        sa.Column("period", sa.String(16), primary_key=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("max_attempts", sa.Integer),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_billing_forecast_club", "billing_forecast", ["run_at", "club_id"])


def downgrade() -> None:
    op.drop_table("billing_forecast")
    op.drop_table("billing_forecast_run")
    op.drop_index("ix_billing_audit_run", "billing_audit")
    op.drop_index("ix_subscription_customer", "subscription")
    op.drop_index("ix_webhook_event_customer", "webhook_event")
    op.drop_index("ix_webhook_event_request_id", "webhook_event")
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
