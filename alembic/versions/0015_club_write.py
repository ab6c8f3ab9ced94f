"""club_write: one row per statement that writes club_status_history or club, with the
writing transaction's id, so a reader can tell in one index probe whether what it saw of
the clubs still holds.

GET /subscription/eligible reads a page of the current-status cache in one statement when
the last page this container served was read from the cache alone (docs/eligible-cache.md).
That statement recomputed which clubs ship, every page: a tenth of a page of 10,000 at a
million subscriptions. GET /clubs recomputed every club's status and next change on every
call. Each now keeps the snapshot in which it read the clubs; while no transaction that
snapshot could not see has since written club_status_history or club (no row here that it
could not see), and no scheduled change has fallen due, what it read still holds. Rows are
only appended (statement-level triggers, no lock shared between writers);
`club_write_prune` empties the table and leaves one row that no earlier snapshot can see,
so pruning never lets an earlier reading pass.

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
TABLES = ("club_status_history", "club")

CHANGED = f"""
CREATE FUNCTION club_written()
RETURNS trigger LANGUAGE plpgsql {OWNER} AS $$
BEGIN
    INSERT INTO club_write DEFAULT VALUES;
    RETURN NULL;
END $$
"""

PRUNE = f"""
CREATE FUNCTION club_write_prune(keep bigint)
RETURNS bigint LANGUAGE plpgsql {OWNER} AS $$
DECLARE
    removed bigint;
BEGIN
    IF (SELECT count(*) FROM (SELECT 1 FROM club_write LIMIT keep + 1) few) <= keep THEN
        RETURN 0;
    END IF;
    DELETE FROM club_write;
    GET DIAGNOSTICS removed = ROW_COUNT;
    -- Written by this transaction, which no snapshot taken before it commits can see: a
    -- reader that looked before the prune still finds a row it could not see.
    INSERT INTO club_write DEFAULT VALUES;
    RETURN removed;
END $$
"""


def trigger_name(table: str) -> str:
    return f"trg_{table}_club_written"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE club_write (
            xid xid8 NOT NULL DEFAULT pg_current_xact_id()
        )
        """
    )
    op.execute("CREATE INDEX ix_club_write_xid ON club_write (xid)")
    # Written by the migration's transaction: a reading made before it (a table dropped by
    # a downgrade, then made again) never passes.
    op.execute("INSERT INTO club_write DEFAULT VALUES")
    op.execute(CHANGED)
    op.execute(PRUNE)
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {trigger_name(table)}"
            f" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION club_written()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger_name(table)} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS club_write_prune")
    op.execute("DROP FUNCTION IF EXISTS club_written")
    op.execute("DROP TABLE IF EXISTS club_write")
