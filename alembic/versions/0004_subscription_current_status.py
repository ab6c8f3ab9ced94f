"""A maintained cache of each subscription's current status, for GET /subscription/eligible.

`subscription_current_status` holds, per subscription with dated history, the status the
rule gives on the interval [valid_from, valid_until): valid_from is the effect_date of the
counting row (NULL = -infinity: no row counted yet, status NULL), valid_until the earliest
effect_date after the instant of computation (NULL = +infinity). A reader at instant T
trusts a row only when T lies in its interval and applies the rule live to the others, so
the answer is exact at any instant (a scheduled change falling due, an injected clock)
without any periodic job. A subscription without a row has no dated history: no status.

Statement-level AFTER triggers (transition tables, so COPY and multi-row statements cost
one recomputation) keep it in step with subscription_status_history and subscription; a
TRUNCATE of either empties it. The triggers never raise for anything the column types
allow, and the table has no foreign key, so nothing an operator may do is blocked.

Concurrent writers to the same subscription are serialised by a FOR NO KEY UPDATE lock on
the subscription row (it does not conflict with the FOR KEY SHARE of foreign-key checks),
so the later one recomputes from a snapshot that includes the earlier one's rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The current-status rule of spec/data-model.md (repositories/status_rule.py) for a set
# of subscriptions at instant `at`; the tests compare it with the plain rule query.
RECOMPUTE = """
CREATE FUNCTION subscription_current_status_recompute(ids varchar[])
RETURNS void LANGUAGE plpgsql
-- Runs as the schema owner: writers need no privilege on the cache to write history.
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    at timestamp := clock_timestamp() AT TIME ZONE 'utc';
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM subscription WHERE id = ANY (ids) ORDER BY id FOR NO KEY UPDATE;
    DELETE FROM subscription_current_status WHERE subscription_id = ANY (ids);
    INSERT INTO subscription_current_status
        (subscription_id, club_id, status_id, valid_from, valid_until)
    SELECT s.id, s.club_id, cur.status_id, cur.effect_date, nxt.effect_date
    FROM subscription s
    LEFT JOIN LATERAL (
        SELECT h.status_id, h.effect_date
        FROM subscription_status_history h
        WHERE h.subscription_id = s.id AND h.effect_date <= at
        ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC
        LIMIT 1
    ) cur ON true
    LEFT JOIN LATERAL (
        SELECT min(h.effect_date) AS effect_date
        FROM subscription_status_history h
        WHERE h.subscription_id = s.id AND h.effect_date > at
    ) nxt ON true
    WHERE s.id = ANY (ids)
      AND (cur.effect_date IS NOT NULL OR nxt.effect_date IS NOT NULL);
END $$
"""

REBUILD = """
CREATE FUNCTION subscription_current_status_rebuild()
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    at timestamp;
    written bigint;
BEGIN
    -- Writers' triggers wait for the rebuild; those that wrote before it are in its snapshot.
    LOCK TABLE subscription_current_status IN EXCLUSIVE MODE;
    at := clock_timestamp() AT TIME ZONE 'utc';
    DELETE FROM subscription_current_status;
    INSERT INTO subscription_current_status
        (subscription_id, club_id, status_id, valid_from, valid_until)
    SELECT s.id, s.club_id, cur.status_id, cur.effect_date, nxt.effect_date
    FROM subscription s
    LEFT JOIN (
        SELECT DISTINCT ON (h.subscription_id) h.subscription_id, h.status_id, h.effect_date
        FROM subscription_status_history h
        WHERE h.subscription_id IS NOT NULL AND h.effect_date <= at
        ORDER BY h.subscription_id, h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC
    ) cur ON cur.subscription_id = s.id
    LEFT JOIN (
        SELECT h.subscription_id, min(h.effect_date) AS effect_date
        FROM subscription_status_history h
        WHERE h.subscription_id IS NOT NULL AND h.effect_date > at
        GROUP BY h.subscription_id
    ) nxt ON nxt.subscription_id = s.id
    WHERE cur.subscription_id IS NOT NULL OR nxt.subscription_id IS NOT NULL;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$
"""

# Optional: restores speed after scheduled changes fell due; never needed for correctness.
REFRESH_DUE = """
CREATE FUNCTION subscription_current_status_refresh_due()
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    ids varchar[];
BEGIN
    SELECT array_agg(subscription_id ORDER BY subscription_id) INTO ids
    FROM subscription_current_status
    WHERE valid_until <= clock_timestamp() AT TIME ZONE 'utc';
    PERFORM subscription_current_status_recompute(ids);
    RETURN coalesce(cardinality(ids), 0);
END $$
"""

HISTORY_TRIGGER = """
CREATE FUNCTION subscription_current_status_history_changed()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    ids varchar[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT subscription_id) INTO ids
        FROM new_rows WHERE subscription_id IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT subscription_id) INTO ids
        FROM old_rows WHERE subscription_id IS NOT NULL;
    ELSE
        SELECT array_agg(DISTINCT subscription_id) INTO ids FROM (
            SELECT subscription_id FROM new_rows
            UNION SELECT subscription_id FROM old_rows
        ) changed WHERE subscription_id IS NOT NULL;
    END IF;
    PERFORM subscription_current_status_recompute(ids);
    RETURN NULL;
END $$
"""

SUBSCRIPTION_TRIGGER = """
CREATE FUNCTION subscription_current_status_subscription_changed()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM subscription_current_status c
        USING old_rows o WHERE c.subscription_id = o.id;
    ELSE
        -- A renamed id had no history (the history foreign key restricts it), so no row.
        DELETE FROM subscription_current_status c
        USING old_rows o
        WHERE c.subscription_id = o.id AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id);
        UPDATE subscription_current_status c SET club_id = n.club_id
        FROM new_rows n
        WHERE c.subscription_id = n.id AND c.club_id IS DISTINCT FROM n.club_id;
    END IF;
    RETURN NULL;
END $$
"""

TRUNCATE_TRIGGER = """
CREATE FUNCTION subscription_current_status_truncated()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM subscription_current_status;
    RETURN NULL;
END $$
"""

TRIGGERS = [
    ("subscription_status_history", "INSERT", "NEW TABLE AS new_rows", "history_changed"),
    (
        "subscription_status_history",
        "UPDATE",
        "NEW TABLE AS new_rows OLD TABLE AS old_rows",
        "history_changed",
    ),
    ("subscription_status_history", "DELETE", "OLD TABLE AS old_rows", "history_changed"),
    (
        "subscription",
        "UPDATE",
        "NEW TABLE AS new_rows OLD TABLE AS old_rows",
        "subscription_changed",
    ),
    ("subscription", "DELETE", "OLD TABLE AS old_rows", "subscription_changed"),
]


def trigger_name(table: str, event: str) -> str:
    return f"trg_{table}_current_status_{event.lower()}"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE subscription_current_status (
            subscription_id varchar(36) NOT NULL,
            club_id integer,
            status_id integer,
            valid_from timestamp,
            valid_until timestamp,
            CONSTRAINT pk_subscription_current_status PRIMARY KEY (subscription_id)
                INCLUDE (club_id, status_id, valid_from, valid_until)
        )
        """
    )
    # Pages of eligible ids walk the ACTIVE rows in id order, and nothing else.
    op.execute(
        "CREATE INDEX ix_subscription_current_status_active"
        " ON subscription_current_status (subscription_id)"
        " INCLUDE (club_id, valid_from, valid_until) WHERE status_id = 1"
    )
    # Readers find the rows outside their interval through these two.
    op.execute(
        "CREATE INDEX ix_subscription_current_status_valid_until"
        " ON subscription_current_status (valid_until) WHERE valid_until IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_subscription_current_status_valid_from"
        " ON subscription_current_status (valid_from)"
    )
    for sql in (RECOMPUTE, REBUILD, REFRESH_DUE, HISTORY_TRIGGER, SUBSCRIPTION_TRIGGER):
        op.execute(sql)
    op.execute(TRUNCATE_TRIGGER)
    for table, event, referencing, function in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger_name(table, event)} AFTER {event} ON {table}"
            f" REFERENCING {referencing} FOR EACH STATEMENT"
            f" EXECUTE FUNCTION subscription_current_status_{function}()"
        )
    for table in ("subscription_status_history", "subscription"):
        op.execute(
            f"CREATE TRIGGER {trigger_name(table, 'TRUNCATE')} AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION subscription_current_status_truncated()"
        )
    op.execute("SELECT subscription_current_status_rebuild()")


def downgrade() -> None:
    for table, event, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger_name(table, event)} ON {table}")
    for table in ("subscription_status_history", "subscription"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger_name(table, 'TRUNCATE')} ON {table}")
    for function in (
        "history_changed()",
        "subscription_changed()",
        "truncated()",
        "refresh_due()",
        "rebuild()",
        "recompute(varchar[])",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS subscription_current_status_{function}")
    op.execute("DROP TABLE IF EXISTS subscription_current_status")
