"""Revision 0007 backfills what the money path's rules need from existing rows."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import create_engine, text

from scripts import devdb
from tests.conftest import migrate


@pytest.fixture
def at_0006(admin_url):
    name = f"beerclub_money_{uuid.uuid4().hex[:8]}"
    url = devdb.ensure_database(admin_url, name)
    migrate(url, "0006")
    engine = create_engine(url)
    yield url, engine
    engine.dispose()
    devdb.drop_database(admin_url, name)


def test_existing_ledger_card_and_schedule_rows_keep_working_after_0007(at_0006):
    # Given ledger rows written before 0007: declined (twice), paid, and a request id
    # another subscription reused (the old bug)
    url, engine = at_0006
    created, billed = datetime(2026, 11, 3, 6), datetime(2026, 11, 1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO club (id, name, store_sku) VALUES (1, 'c', 5)"))
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at, billing_date) VALUES"
                " ('s1', '2026-11', 'r1b', 'failed', 2, :c, :c, :c, :b),"
                " ('s2', '2026-11', 'r2', 'succeeded', 1, :c, :c, :c, :b),"
                " ('s3', '2026-11', 'r2', 'succeeded', 1, :later, :later, :later, :b)"
            ),
            {"c": created, "b": billed, "later": datetime(2026, 11, 4)},
        )
        conn.execute(
            text(
                "INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at)"
                " SELECT id, 1, 'r1a', :c FROM charge WHERE subscription_id = 's1'"
            ),
            {"c": created},
        )
        conn.execute(
            text(
                "INSERT INTO billing_schedule (club_id, interval, updated_at)"
                " VALUES (1, 'annual', :c)"
            ),
            {"c": created},
        )
    # When upgraded to 0007
    migrate(url, "0007")
    with engine.connect() as conn:
        registry = dict(
            conn.execute(text("SELECT request_id, subject FROM platform_request")).all()
        )
        ledger = {
            row.subscription_id: row
            for row in conn.execute(text("SELECT * FROM charge")).mappings()
        }
        schedule = conn.execute(text("SELECT * FROM billing_schedule")).mappings().one()
    # Then every id sent is registered to its subject (the first use of a reused id wins)
    assert registry == {"r1a": "s1:2026-11", "r1b": "s1:2026-11", "r2": "s2:2026-11"}
    # And the declined row's window opened as before; paid rows name their order
    assert ledger["s1"]["declined_at"] == created
    assert ledger["s2"]["paid_request_id"] == "r2"
    # And the schedule is dated from its last update, replacing the default calendar
    assert (schedule["changed_at"], schedule["previous_interval"]) == (created, None)
    # And the revision goes down cleanly
    migrate(url, "0006", down=True)
