"""The approved schema exactly as the approved data model defines it, and migrations both ways."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from scripts import devdb
from tests import builders
from tests.conftest import ROOT, migrate

APPROVED = {
    ("club", "id"): ("integer", None, "NO"),
    ("club", "name"): ("character varying", 128, "YES"),
    ("club", "store_sku"): ("integer", None, "YES"),
    ("club_status", "id"): ("integer", None, "NO"),
    ("club_status", "name"): ("character varying", 128, "YES"),
    ("club_status_history", "id"): ("character varying", 36, "NO"),
    ("club_status_history", "club_id"): ("integer", None, "YES"),
    ("club_status_history", "club_status_id"): ("integer", None, "YES"),
    ("club_status_history", "effect_date"): ("timestamp without time zone", None, "YES"),
    ("club_status_history", "create_date"): ("timestamp without time zone", None, "YES"),
    ("club_status_history", "details"): ("character varying", 256, "YES"),
    ("subscription", "id"): ("character varying", 36, "NO"),
    ("subscription", "club_id"): ("integer", None, "YES"),
    ("subscription", "customer_store_id"): ("character varying", 36, "YES"),
    ("subscription", "create_date"): ("timestamp without time zone", None, "YES"),
    ("status", "id"): ("integer", None, "NO"),
    ("status", "name"): ("character varying", 128, "YES"),
    ("subscription_status_history", "id"): ("character varying", 36, "NO"),
    ("subscription_status_history", "subscription_id"): ("character varying", 36, "YES"),
    ("subscription_status_history", "status_id"): ("integer", None, "YES"),
    ("subscription_status_history", "effect_date"): ("timestamp without time zone", None, "YES"),
    ("subscription_status_history", "create_date"): ("timestamp without time zone", None, "YES"),
    ("subscription_status_history", "details"): ("character varying", 256, "YES"),
}
TABLES = sorted({table for table, _ in APPROVED})
AUTOINCREMENT = {("club", "id"), ("club_status", "id"), ("status", "id")}


def test_approved_columns_have_exact_types_lengths_nullability_and_no_server_defaults(db):
    # Given the migrated database
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, data_type, character_maximum_length,"
                " is_nullable, column_default FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = ANY(:t)"
            ),
            {"t": TABLES},
        ).all()
    # Then every approved column is there exactly, and nothing else
    found = {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}
    assert found == APPROVED
    # And only the serial ids have a default
    defaults = {(r[0], r[1]) for r in rows if r[5] is not None}
    assert defaults == AUTOINCREMENT


def test_approved_tables_have_only_their_primary_keys_and_restricting_foreign_keys(db):
    with db.connect() as conn:
        constraints = conn.execute(
            text(
                "SELECT conrelid::regclass::text, contype, confdeltype, pg_get_constraintdef(oid)"
                " FROM pg_constraint WHERE conrelid::regclass::text = ANY(:t)"
            ),
            {"t": TABLES},
        ).all()
        triggers = set(
            conn.execute(
                text(
                    "SELECT tgrelid::regclass::text, tgname, tgfoid::regproc::text FROM pg_trigger"
                    " WHERE NOT tgisinternal AND tgrelid::regclass::text = ANY(:t)"
                ),
                {"t": TABLES},
            ).tuples()
        )
    kinds = sorted((t, c) for t, c, _, _ in constraints)
    assert kinds == sorted(
        [(t, "p") for t in TABLES]
        + [
            ("club_status_history", "f"),
            ("club_status_history", "f"),
            ("subscription", "f"),
            ("subscription_status_history", "f"),
            ("subscription_status_history", "f"),
        ]
    )
    fks = {d for _, c, _, d in constraints if c == "f"}
    assert fks == {
        "FOREIGN KEY (club_id) REFERENCES club(id) ON DELETE RESTRICT",
        "FOREIGN KEY (club_status_id) REFERENCES club_status(id) ON DELETE RESTRICT",
        "FOREIGN KEY (subscription_id) REFERENCES subscription(id) ON DELETE RESTRICT",
        "FOREIGN KEY (status_id) REFERENCES status(id) ON DELETE RESTRICT",
    }
    # And the only triggers are the statement-level ones keeping the current-status cache,
    # and the ones noting each write to the clubs and their statuses (revision 0015)
    assert triggers == CURRENT_STATUS_TRIGGERS | {
        (table, f"trg_{table}_club_written", "club_written")
        for table in ("club_status_history", "club")
    }


CURRENT_STATUS_TRIGGERS = {
    (table, f"trg_{table}_current_status_{event}", f"subscription_current_status_{function}")
    for table, event, function in [
        ("subscription_status_history", "insert", "history_changed"),
        ("subscription_status_history", "update", "history_changed"),
        ("subscription_status_history", "delete", "history_changed"),
        ("subscription_status_history", "truncate", "truncated"),
        ("subscription", "update", "subscription_changed"),
        ("subscription", "delete", "subscription_changed"),
        ("subscription", "truncate", "truncated"),
    ]
}


def test_plain_sql_writes_of_every_kind_still_succeed_with_the_triggers(db):
    # Given a club and subscriptions written by plain SQL
    club = builders.club(db)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscription (id, club_id) VALUES ('w-1', :c), ('w-2', :c),"
                " ('w-3', NULL)"
            ),
            {"c": club},
        )
        # When history rows as sparse and odd as the types allow are inserted in one statement
        conn.execute(
            text(
                "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
                " effect_date, create_date) VALUES ('wh-1', 'w-1', 1, '2020-01-01', NULL),"
                " ('wh-2', 'w-1', NULL, '9999-12-31', NULL), ('wh-3', NULL, 1, '2020-01-01',"
                " NULL), ('wh-4', 'w-2', NULL, NULL, NULL), ('wh-5', 'w-3', 2, '-infinity',"
                " 'infinity')"
            )
        )
    # And updated every way, moved between subscriptions, deleted, copied in and renamed
    with db.begin() as conn:
        conn.execute(text("UPDATE subscription_status_history SET effect_date = NULL"))
        conn.execute(text("UPDATE subscription_status_history SET subscription_id = 'w-2'"))
        conn.execute(text("UPDATE subscription SET club_id = NULL"))
        conn.execute(text("UPDATE subscription SET customer_store_id = 'x' WHERE id = 'w-1'"))
        conn.execute(text("DELETE FROM subscription_status_history WHERE id = 'wh-1'"))
        conn.execute(text("INSERT INTO subscription (id) VALUES ('w-4')"))
        conn.execute(text("UPDATE subscription SET id = 'w-5' WHERE id = 'w-4'"))
    raw = db.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.copy_expert(
                "COPY subscription_status_history (id, subscription_id, status_id, effect_date)"
                " FROM STDIN",
                io.StringIO("wc-1\tw-1\t1\t2021-01-01\nwc-2\t\\N\t\\N\t\\N\n"),
            )
        raw.commit()
    finally:
        raw.close()
    with db.begin() as conn:
        conn.execute(text("DELETE FROM subscription_status_history"))
        conn.execute(text("DELETE FROM subscription"))
    # Then every statement was accepted and nothing is left
    assert builders.count(db, "subscription") == 0
    assert builders.count(db, "subscription_current_status") == 0


def test_lookup_rows_are_seeded_with_the_approved_names(db):
    with db.connect() as conn:
        status = conn.execute(text("SELECT id, name FROM status ORDER BY id")).all()
        club_status = conn.execute(text("SELECT id, name FROM club_status ORDER BY id")).all()
        # Operators can add a lookup row without naming its id
        next_id = conn.execute(text("INSERT INTO status (name) VALUES ('X') RETURNING id")).scalar()
        conn.rollback()
    assert status == [(1, "ATIVO"), (2, "CANCELADO"), (3, "PAUSADO")]
    assert club_status == [(1, "ATIVO"), (2, "FECHADO"), (3, "INATIVO")]
    assert next_id == 4


def test_plain_sql_rows_with_nulls_everywhere_are_accepted(db):
    # Given rows as sparse as the column types allow
    with db.begin() as conn:
        conn.execute(text("INSERT INTO club DEFAULT VALUES"))
        conn.execute(text("INSERT INTO subscription (id) VALUES ('s-null')"))
        conn.execute(text("INSERT INTO subscription (id) VALUES ('s-null-2')"))
        conn.execute(text("INSERT INTO subscription_status_history (id) VALUES ('h-null')"))
        conn.execute(text("INSERT INTO club_status_history (id) VALUES ('c-null')"))
    # Then they are all there
    assert builders.count(db, "subscription") == 2


def test_deleting_and_truncating_approved_tables_is_never_blocked(db, now):
    # Given a subscription made through the API path (with a reservation row)
    from domain import subscriptions
    from repositories.unit_of_work import SqlAlchemyUnitOfWork

    club = builders.club(db)
    sub = subscriptions.subscribe(SqlAlchemyUnitOfWork(), club, "c", now.value())
    # When an operator deletes its history, then it, then truncates everything
    with db.begin() as conn:
        conn.execute(
            text("DELETE FROM subscription_status_history WHERE subscription_id = :i"),
            {"i": sub.id},
        )
        conn.execute(text("DELETE FROM subscription WHERE id = :i"), {"i": sub.id})
    with db.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE club, club_status_history, subscription, subscription_status_history,"
                " status, club_status CASCADE"
            )
        )
    # Then nothing blocked it; restore the lookups for other tests
    migrate_lookups(db)
    assert builders.count(db, "subscription") == 0


def migrate_lookups(db):
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO status VALUES (1,'ATIVO'),(2,'CANCELADO'),(3,'PAUSADO');"
                "INSERT INTO club_status VALUES (1,'ATIVO'),(2,'FECHADO'),(3,'INATIVO')"
            )
        )


@pytest.fixture
def scratch_db(admin_url):
    name = f"beerclub_scratch_{uuid.uuid4().hex[:8]}"
    url = devdb.ensure_database(admin_url, name)
    yield url
    devdb.drop_database(admin_url, name)


def table_names(url):
    engine = create_engine(url)
    with engine.connect() as conn:
        names = set(
            conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        )
    engine.dispose()
    return names - {"alembic_version"}


def test_downgrade_to_base_removes_everything_and_upgrade_rebuilds_it(scratch_db):
    # Given a migrated database
    migrate(scratch_db)
    full = table_names(scratch_db)
    # When downgraded to base, then upgraded again
    migrate(scratch_db, "base", down=True)
    empty = table_names(scratch_db)
    migrate(scratch_db)
    # Then base is empty and head is whole again
    assert empty == set()
    assert table_names(scratch_db) == full
    assert set(TABLES) <= full


def test_alembic_reads_a_legacy_scope_file_with_x_scope(scratch_db):
    # Given a <scope>_config.json describing the database
    url = make_url(scratch_db)
    scope = f"ci{uuid.uuid4().hex[:6]}"
    config = ROOT / f"{scope}_config.json"
    config.write_text(
        json.dumps(
            {
                "database": {
                    "database_type": "postgresql",
                    "driver": "psycopg2",
                    "db_user": url.username,
                    "db_password": url.password or "",
                    "db_host": url.host or url.query.get("host"),
                    "db_port": url.port or 5432,
                    "db_name": url.database,
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    try:
        # When alembic runs with -x scope=<scope> and no DATABASE_URL
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"scope={scope}", "upgrade", "head"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        config.unlink()
    # Then that database is migrated
    assert result.returncode == 0, result.stderr
    assert "subscription" in table_names(scratch_db)


def test_a_role_with_rights_only_on_the_approved_tables_can_still_write_history(db):
    # Given an operator role granted the approved tables and nothing of ours
    role = f"operator_{uuid.uuid4().hex[:8]}"
    club = builders.club(db)
    with db.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role}"))
        conn.execute(
            text(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON subscription,"
                f" subscription_status_history, club, status TO {role}"
            )
        )
    try:
        # When it adds a subscription and history, moves it and deletes it all
        with db.begin() as conn:
            conn.execute(text(f"SET LOCAL ROLE {role}"))
            conn.execute(
                text("INSERT INTO subscription (id, club_id) VALUES ('op-1', :c)"), {"c": club}
            )
            conn.execute(
                text(
                    "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
                    " effect_date) VALUES ('op-h', 'op-1', 1, '2020-01-01')"
                )
            )
            conn.execute(text("UPDATE subscription SET club_id = NULL WHERE id = 'op-1'"))
            cached = conn.scalar(text("SELECT count(*) FROM subscription_status_history"))
            conn.execute(text("DELETE FROM subscription_status_history WHERE id = 'op-h'"))
            conn.execute(text("DELETE FROM subscription WHERE id = 'op-1'"))
        # Then every statement succeeded, the cache having been kept by its owner's rights
        assert cached == 1
        assert builders.count(db, "subscription_current_status") == 0
    finally:
        with db.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
