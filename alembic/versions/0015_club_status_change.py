"""club_status_change: one row per statement that writes club_status_history, with the
writing transaction's id, so a page can tell in one index probe whether the clubs' statuses
a container saw are still the ones in force.

GET /subscription/eligible reads a page of the current-status cache in one statement when
the last page this container served was read from the cache alone (docs/eligible-cache.md).
That statement recomputed which clubs ship, every page: a third of a millisecond, a tenth of
a page of 10,000 at a million subscriptions. The container now keeps the snapshot in which
it computed them; while no transaction that snapshot could not see has since written
club_status_history (no row here that it could not see), and no scheduled change has fallen
due, the clubs are the same. Rows are only appended (a statement-level trigger, no lock
shared between writers); `club_status_change_prune` empties the table and leaves one row
that no earlier snapshot can see, so pruning never lets an earlier guess pass.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OWNER = "SECURITY DEFINER SET search_path FROM CURRENT"
TRIGGER = "trg_club_status_history_changed"

CHANGED = f"""
CREATE FUNCTION club_status_history_changed()
RETURNS trigger LANGUAGE plpgsql {OWNER} AS $$
BEGIN
    INSERT INTO club_status_change DEFAULT VALUES;
    RETURN NULL;
END $$
"""

PRUNE = f"""
CREATE FUNCTION club_status_change_prune(keep bigint)
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    removed bigint;
BEGIN
    IF (SELECT count(*) FROM (SELECT 1 FROM club_status_change LIMIT keep + 1) few) <= keep THEN
        RETURN 0;
    END IF;
    DELETE FROM club_status_change;
    GET DIAGNOSTICS removed = ROW_COUNT;
    -- Written by this transaction, which no snapshot taken before it commits can see: a
    -- container that guessed before the prune still finds a row it could not see.
    INSERT INTO club_status_change DEFAULT VALUES;
    RETURN removed;
END $$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE club_status_change (
            xid xid8 NOT NULL DEFAULT pg_current_xact_id()
        )
        """
    )
    op.execute("CREATE INDEX ix_club_status_change_xid ON club_status_change (xid)")
    op.execute(CHANGED)
    op.execute(PRUNE)
    op.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
        " ON club_status_history FOR EACH STATEMENT"
        " EXECUTE FUNCTION club_status_history_changed()"
    )


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON club_status_history")
    op.execute("DROP FUNCTION IF EXISTS club_status_change_prune")
    op.execute("DROP FUNCTION IF EXISTS club_status_history_changed")
    op.execute("DROP TABLE IF EXISTS club_status_change")
