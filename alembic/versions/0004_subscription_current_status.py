"""A maintained cache of each subscription's current status, for GET /subscription/eligible.

`subscription_current_status` holds, per subscription with dated history, the status the
rule gives on the interval [valid_from, valid_until): valid_from is the effect_date of the
counting row (NULL = -infinity: no row counted yet, status NULL), valid_until the earliest
effect_date after the instant of computation (NULL = +infinity). A reader at instant T
trusts a row only when T lies in its interval and the subscription is not marked dirty,
and applies the rule live to the others, so the answer is exact at any instant (a
scheduled change falling due, an injected clock) without any periodic job.

Writers never touch the cache and never wait for anything of ours. Statement-level AFTER
triggers (transition tables, so COPY and multi-row statements cost one statement) only
append the touched subscription ids to `subscription_status_dirty`, a table without
unique keys that nobody else locks; a TRUNCATE appends a NULL id, meaning "everything".
An earlier version recomputed the cache inside the triggers, serialised by row locks on
subscription: two operators writing two subscriptions in opposite orders then deadlocked,
which the data model forbids (tests/integration/test_cache_concurrency.py).

The cache itself is written only by `subscription_current_status_absorb()` (which the
eligible endpoint calls before its first page), `_refresh_due()` and `_rebuild()`, one at
a time (a lock on the single row of `subscription_status_absorber`, which no user
statement touches). An absorber removes the dirty entries it can see and then recomputes
those subscriptions in a later statement, whose snapshot includes every write those
entries stand for; entries committed meanwhile stay for the next absorber.

The tables have no foreign key, so nothing an operator may do is blocked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Every function runs as the schema owner: writers need no privilege on our tables.
OWNER = "SECURITY DEFINER SET search_path FROM CURRENT"

# The current-status rule of spec/data-model.md (repositories/status_rule.py) for a set of
# subscriptions at the instant of the call; the tests compare it with the plain rule query.
WRITE = f"""
CREATE FUNCTION subscription_current_status_write(ids varchar[])
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    at timestamp := clock_timestamp() AT TIME ZONE 'utc';
    written bigint;
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN 0;
    END IF;
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
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$
"""

REBUILD = f"""
CREATE FUNCTION subscription_current_status_rebuild()
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    at timestamp;
    written bigint;
BEGIN
    -- Waits for a running absorber; writers never wait for the rebuild.
    PERFORM 1 FROM subscription_status_absorber WHERE id = 1 FOR UPDATE;
    -- Every entry seen here is covered by the statements below, which see at least as much.
    DELETE FROM subscription_status_dirty;
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

ABSORB = f"""
CREATE FUNCTION subscription_current_status_absorb(batch integer DEFAULT 100000)
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    ids varchar[];
    everything boolean;
BEGIN
    -- One cache writer at a time; when another is at work, leave the entries to it.
    PERFORM 1 FROM subscription_status_absorber WHERE id = 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    SELECT EXISTS (SELECT 1 FROM subscription_status_dirty WHERE subscription_id IS NULL)
    INTO everything;
    IF everything THEN
        RETURN subscription_current_status_rebuild();
    END IF;
    WITH taken AS (
        DELETE FROM subscription_status_dirty
        WHERE seq IN (SELECT seq FROM subscription_status_dirty ORDER BY seq LIMIT batch)
        RETURNING subscription_id
    )
    SELECT array_agg(DISTINCT subscription_id) INTO ids FROM taken;
    -- A later statement: its snapshot holds every write the taken entries stand for.
    PERFORM subscription_current_status_write(ids);
    RETURN coalesce(cardinality(ids), 0);
END $$
"""

# Optional: brings rows whose scheduled change fell due back to the fast path.
REFRESH_DUE = f"""
CREATE FUNCTION subscription_current_status_refresh_due()
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    ids varchar[];
BEGIN
    PERFORM 1 FROM subscription_status_absorber WHERE id = 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    SELECT array_agg(subscription_id ORDER BY subscription_id) INTO ids
    FROM subscription_current_status
    WHERE valid_until <= clock_timestamp() AT TIME ZONE 'utc';
    PERFORM subscription_current_status_write(ids);
    RETURN coalesce(cardinality(ids), 0);
END $$
"""

HISTORY_TRIGGER = f"""
CREATE FUNCTION subscription_current_status_history_changed()
RETURNS trigger LANGUAGE plpgsql {OWNER} AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO subscription_status_dirty (subscription_id)
        SELECT DISTINCT subscription_id FROM new_rows WHERE subscription_id IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO subscription_status_dirty (subscription_id)
        SELECT DISTINCT subscription_id FROM old_rows WHERE subscription_id IS NOT NULL;
    ELSE
        INSERT INTO subscription_status_dirty (subscription_id)
        SELECT subscription_id FROM new_rows WHERE subscription_id IS NOT NULL
        UNION SELECT subscription_id FROM old_rows WHERE subscription_id IS NOT NULL;
    END IF;
    RETURN NULL;
END $$
"""

SUBSCRIPTION_TRIGGER = f"""
CREATE FUNCTION subscription_current_status_subscription_changed()
RETURNS trigger LANGUAGE plpgsql {OWNER} AS $$
BEGIN
    -- The cache keeps the club of each subscription and must forget deleted ones.
    IF TG_OP = 'DELETE' THEN
        INSERT INTO subscription_status_dirty (subscription_id)
        SELECT DISTINCT id FROM old_rows;
    ELSE
        INSERT INTO subscription_status_dirty (subscription_id)
        SELECT o.id FROM old_rows o
        LEFT JOIN new_rows n ON n.id = o.id
        WHERE n.id IS NULL OR n.club_id IS DISTINCT FROM o.club_id;
    END IF;
    RETURN NULL;
END $$
"""

TRUNCATE_TRIGGER = f"""
CREATE FUNCTION subscription_current_status_truncated()
RETURNS trigger LANGUAGE plpgsql {OWNER} AS $$
BEGIN
    INSERT INTO subscription_status_dirty (subscription_id) VALUES (NULL);
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

FUNCTIONS = (
    "history_changed()",
    "subscription_changed()",
    "truncated()",
    "refresh_due()",
    "absorb(integer)",
    "rebuild()",
    "write(varchar[])",
)


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
    # Append-only for writers: no unique key besides the sequence, nothing to wait for.
    op.execute(
        """
        CREATE TABLE subscription_status_dirty (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subscription_id varchar(36)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_subscription_status_dirty_id"
        " ON subscription_status_dirty (subscription_id)"
    )
    op.execute("CREATE TABLE subscription_status_absorber (id integer PRIMARY KEY)")
    op.execute("INSERT INTO subscription_status_absorber VALUES (1)")
    for sql in (
        WRITE,
        REBUILD,
        ABSORB,
        REFRESH_DUE,
        HISTORY_TRIGGER,
        SUBSCRIPTION_TRIGGER,
        TRUNCATE_TRIGGER,
    ):
        op.execute(sql)
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
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS subscription_current_status_{function}")
    op.execute("DROP TABLE IF EXISTS subscription_status_absorber")
    op.execute("DROP TABLE IF EXISTS subscription_status_dirty")
    op.execute("DROP TABLE IF EXISTS subscription_current_status")
