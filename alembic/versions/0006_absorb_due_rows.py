"""The absorber also recomputes the cache rows whose scheduled change fell due.

Revision 0004's readers compute live every subscription whose cache interval has ended
(a scheduled change took effect), and only the optional `_refresh_due()` brought those
back to the cache. Without a job calling it, every page of GET /subscription/eligible
would take the slow path from the first scheduled change on. Now
`subscription_current_status_absorb()`, which the endpoint calls before each first page,
also recomputes up to `batch` rows whose interval ended by the database's clock. Still
only for speed: readers are exact whatever the cache holds. Both functions read the
clock once: in the WHERE clause, clock_timestamp() (volatile) kept the index on
valid_until from being used, and refresh_due() scanned every row with a date to come.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OWNER = "SECURITY DEFINER SET search_path FROM CURRENT"

ABSORB = f"""
CREATE OR REPLACE FUNCTION subscription_current_status_absorb(batch integer DEFAULT 100000)
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    ids varchar[];
    due varchar[];
    everything boolean;
    -- Read once: clock_timestamp() in the WHERE clause is volatile, evaluated per row,
    -- and keeps the index on valid_until from being used (140 ms at a million rows).
    present timestamp := clock_timestamp() AT TIME ZONE 'utc';
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
    -- Rows whose scheduled change has taken effect, earliest first.
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

# The same fix for the operators' function (it scanned every row with a date to come).
REFRESH_DUE = f"""
CREATE OR REPLACE FUNCTION subscription_current_status_refresh_due()
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    ids varchar[];
    present timestamp := clock_timestamp() AT TIME ZONE 'utc';
BEGIN
    PERFORM 1 FROM subscription_status_absorber WHERE id = 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    SELECT array_agg(subscription_id ORDER BY subscription_id) INTO ids
    FROM subscription_current_status
    WHERE valid_until <= present;
    PERFORM subscription_current_status_write(ids);
    RETURN coalesce(cardinality(ids), 0);
END $$
"""


def _revision_0004():
    path = Path(__file__).with_name("0004_subscription_current_status.py")
    spec = importlib.util.spec_from_file_location("revision_0004", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute(ABSORB)
    op.execute(REFRESH_DUE)


def downgrade() -> None:
    before = _revision_0004()
    for sql in (before.ABSORB, before.REFRESH_DUE):
        op.execute(sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
