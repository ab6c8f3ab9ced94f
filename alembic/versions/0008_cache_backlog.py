"""The current-status cache under bulk writes: a backlog measure, a bounded request absorber.

Revision 0004's readers computed every marked subscription live on every page, and the
endpoint absorbed up to 100,000 marks before each first page: after a bulk write of
plain SQL (triggers on), a listing took 16 to 64 times the plain rule and caught up only
after about ten listings. Now (docs/eligible-cache.md):

- `subscription_current_status_backlog()` tells how many marks wait, in two index probes
  (the span of their sequence numbers: an upper bound, as the absorber takes the oldest
  first), or NULL when everything is marked (after a TRUNCATE). Readers choose their path
  by it: the cache, the cache and the marked rows computed live page by page, or the
  plain rule over the history when the backlog is large.
- `subscription_current_status_absorb_bounded(batch, backlog_limit)` is what a request
  calls before its first page: it absorbs (as `_absorb(batch)`) only a backlog of at most
  `backlog_limit` marks (or everything, when there are at most that many subscriptions),
  so no request pays for a bulk write. The scheduled absorber
  (`scripts/absorb_status.py`, every minute in the cloud and in a loop under `make run`)
  takes large backlogs in slices, or rebuilds, and vacuums the cache after a bulk rewrite.
- A statement writing more than 200,000 history rows marks everything (as a TRUNCATE
  does) rather than each subscription: the trigger then costs nothing measurable on a
  million-row statement, and the scheduled absorber rebuilds the cache.
- An index on subscription (id) INCLUDE (club_id) (indexes on approved tables are
  allowed): the plain rule's pages walk it in id order next to the history's covering
  index, a merge of two index-only scans, instead of a lookup per subscription.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OWNER = "SECURITY DEFINER SET search_path FROM CURRENT"

BACKLOG = f"""
CREATE FUNCTION subscription_current_status_backlog()
RETURNS bigint LANGUAGE sql STABLE {OWNER} AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM subscription_status_dirty WHERE subscription_id IS NULL)
            THEN NULL
        ELSE coalesce(
            (SELECT max(seq) FROM subscription_status_dirty)
            - (SELECT min(seq) FROM subscription_status_dirty) + 1, 0)
    END
$$
"""

ABSORB_BOUNDED = f"""
CREATE FUNCTION subscription_current_status_absorb_bounded(
    batch integer, backlog_limit bigint
) RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    waiting bigint := subscription_current_status_backlog();
BEGIN
    -- A large backlog is the scheduled absorber's work: readers answer with the plain
    -- rule meanwhile, and no request waits for a bulk write. Everything marked (after a
    -- TRUNCATE) is small when the subscriptions are few.
    IF waiting > backlog_limit OR (waiting IS NULL AND (
        SELECT count(*) FROM (SELECT 1 FROM subscription LIMIT backlog_limit + 1) few
    ) > backlog_limit) THEN
        RETURN -2;
    END IF;
    RETURN subscription_current_status_absorb(batch);
END $$
"""

# The scheduled absorber's rebuild: leaves the work to a running absorber instead of waiting.
REBUILD_SKIP_LOCKED = f"""
CREATE FUNCTION subscription_current_status_rebuild_skip_locked()
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
BEGIN
    PERFORM 1 FROM subscription_status_absorber WHERE id = 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    RETURN subscription_current_status_rebuild();
END $$
"""

# Triggers: a statement writing more than this many history rows marks everything (one
# NULL id, as a TRUNCATE does) instead of each subscription: a million marks cost the
# statement about a third of its time, one costs nothing, and the scheduled absorber
# rebuilds the cache within the minute (readers use the plain rule meanwhile).
MARK_EVERYTHING_ABOVE = 200_000

HISTORY_TRIGGER = f"""
CREATE OR REPLACE FUNCTION subscription_current_status_history_changed()
RETURNS trigger LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    -- A session may lower it (tests): SET beer_club.mark_everything_above = '10'.
    above bigint := coalesce(
        nullif(current_setting('beer_club.mark_everything_above', true), '')::bigint,
        {MARK_EVERYTHING_ABOVE});
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF (SELECT count(*) FROM (SELECT 1 FROM new_rows LIMIT above + 1) n) > above THEN
            INSERT INTO subscription_status_dirty (subscription_id) VALUES (NULL);
            RETURN NULL;
        END IF;
    ELSIF (SELECT count(*) FROM (SELECT 1 FROM old_rows LIMIT above + 1) o) > above THEN
        INSERT INTO subscription_status_dirty (subscription_id) VALUES (NULL);
        RETURN NULL;
    END IF;
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

# The absorber's write of a slice, joined to unnest(ids) instead of `= ANY (ids)`: inside
# plpgsql the array is a parameter, and once the plan is generic PostgreSQL tests it
# linearly against every row of a sequential scan (a slice of 20,000 ids at a million
# subscriptions ran for minutes); an unnest join probes the indexes once per id.
WRITE = f"""
CREATE OR REPLACE FUNCTION subscription_current_status_write(ids varchar[])
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    at timestamp := clock_timestamp() AT TIME ZONE 'utc';
    written bigint;
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM subscription_current_status c
    USING (SELECT DISTINCT u.id FROM unnest(ids) AS u(id)) t
    WHERE c.subscription_id = t.id;
    INSERT INTO subscription_current_status
        (subscription_id, club_id, status_id, valid_from, valid_until)
    SELECT s.id, s.club_id, cur.status_id, cur.effect_date, nxt.effect_date
    FROM (SELECT DISTINCT u.id FROM unnest(ids) AS u(id)) t
    JOIN subscription s ON s.id = t.id
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
    WHERE cur.effect_date IS NOT NULL OR nxt.effect_date IS NOT NULL;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$
"""

# Revision 0006's absorber, but taking its slice with a range on the sequence instead of
# `seq IN (SELECT ... LIMIT batch)`: right after a bulk write the marks table's statistics
# still say it is empty, and that plan compared every mark with every mark of the slice
# (minutes for a slice of 20,000 among 100,000 marks).
ABSORB = f"""
CREATE OR REPLACE FUNCTION subscription_current_status_absorb(batch integer DEFAULT 100000)
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    ids varchar[];
    due varchar[];
    everything boolean;
    last_seq bigint;
    present timestamp := clock_timestamp() AT TIME ZONE 'utc';
BEGIN
    PERFORM 1 FROM subscription_status_absorber WHERE id = 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    SELECT EXISTS (SELECT 1 FROM subscription_status_dirty WHERE subscription_id IS NULL)
    INTO everything;
    IF everything THEN
        RETURN subscription_current_status_rebuild();
    END IF;
    SELECT max(seq) INTO last_seq FROM (
        SELECT seq FROM subscription_status_dirty ORDER BY seq LIMIT batch
    ) oldest;
    WITH taken AS (
        DELETE FROM subscription_status_dirty WHERE seq <= last_seq
        RETURNING subscription_id
    )
    SELECT array_agg(DISTINCT subscription_id) INTO ids FROM taken;
    SELECT array_agg(subscription_id) INTO due FROM (
        SELECT subscription_id FROM subscription_current_status
        WHERE valid_until <= present
        ORDER BY valid_until
        LIMIT batch
    ) ended;
    -- A later statement: its snapshot holds every write the taken entries stand for.
    PERFORM subscription_current_status_write(ids || due);
    RETURN coalesce(cardinality(ids), 0) + coalesce(cardinality(due), 0);
END $$
"""

INDEX = "ix_subscription_id_club"


def upgrade() -> None:
    op.execute(BACKLOG)
    op.execute(ABSORB_BOUNDED)
    op.execute(REBUILD_SKIP_LOCKED)
    op.execute(HISTORY_TRIGGER)
    op.execute(WRITE)
    op.execute(ABSORB)
    # Statistics follow bulk writes within autovacuum's next round (the readers' plans
    # against the marks depend on them).
    op.execute(
        "ALTER TABLE subscription_status_dirty SET (autovacuum_analyze_scale_factor = 0,"
        " autovacuum_analyze_threshold = 1000)"
    )
    op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON subscription (id) INCLUDE (club_id)")


def _revision_0004():
    path = Path(__file__).with_name("0004_subscription_current_status.py")
    spec = importlib.util.spec_from_file_location("revision_0004", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _revision_0006():
    path = Path(__file__).with_name("0006_absorb_due_rows.py")
    spec = importlib.util.spec_from_file_location("revision_0006", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    op.execute(
        "ALTER TABLE subscription_status_dirty RESET (autovacuum_analyze_scale_factor,"
        " autovacuum_analyze_threshold)"
    )
    op.execute(_revision_0006().ABSORB)
    before = _revision_0004()
    for sql in (before.HISTORY_TRIGGER, before.WRITE):
        op.execute(sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    op.execute(
        "DROP FUNCTION IF EXISTS subscription_current_status_absorb_bounded(integer, bigint)"
    )
    op.execute("DROP FUNCTION IF EXISTS subscription_current_status_rebuild_skip_locked()")
    op.execute("DROP FUNCTION IF EXISTS subscription_current_status_backlog()")
