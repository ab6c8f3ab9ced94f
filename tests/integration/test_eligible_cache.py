"""GET /subscription/eligible stays exactly the rule's answer whatever SQL does to the history.

The endpoint reads the trigger-maintained cache (revision 0004); every test compares it with
the plain rule query over the history (no cache) at several instants: the far past, the
pinned test clock, the real present (when the cache was computed), and the future.
"""

from __future__ import annotations

import io
import random
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from handlers import eligible
from tests import builders
from tests.events import api_event, invoke

RULE = """
WITH sub_now AS (
    SELECT DISTINCT ON (subscription_id) subscription_id, status_id
    FROM subscription_status_history
    WHERE subscription_id IS NOT NULL AND effect_date <= :at
    ORDER BY subscription_id, effect_date DESC, create_date DESC NULLS LAST, id DESC
), club_now AS (
    SELECT DISTINCT ON (club_id) club_id, club_status_id
    FROM club_status_history
    WHERE club_id IS NOT NULL AND effect_date <= :at
    ORDER BY club_id, effect_date DESC, create_date DESC NULLS LAST, id DESC
)
SELECT s.id FROM subscription s
JOIN sub_now ON sub_now.subscription_id = s.id
JOIN club_now ON club_now.club_id = s.club_id
WHERE sub_now.status_id = 1 AND club_now.club_status_id IN (1, 2)
ORDER BY s.id
"""


def real_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def instants() -> list[datetime]:
    present = real_now()
    return [
        datetime(2019, 6, 1),
        datetime(2026, 11, 21, 12),
        present - timedelta(days=3),
        present,
        present + timedelta(days=3),
        present + timedelta(days=40),
        datetime(2040, 1, 1),
    ]


def rule_answer(db, at: datetime) -> list[str]:
    with db.connect() as conn:
        return list(conn.scalars(text(RULE), {"at": at}))


def endpoint_answer(query=None) -> list[str]:
    status, body, _ = invoke(
        eligible.lambda_handler, api_event("GET", "/subscription/eligible", query=query)
    )
    assert status == 200, body
    return body


def paged_answer(limit: int = 3) -> list[str]:
    ids, after = [], None
    while True:
        page = endpoint_answer({"limit": str(limit)} | ({"after": after} if after else {}))
        ids += page
        if len(page) < limit:
            return ids
        after = page[-1]


def assert_exact(db, now, at_instants=None) -> None:
    for at in at_instants or instants():
        now(at)
        expected = rule_answer(db, at)
        assert endpoint_answer() == expected, f"at {at}"
        assert paged_answer() == expected, f"paged at {at}"


def sql(db, statement: str, **params) -> None:
    with db.begin() as conn:
        conn.execute(text(statement), params)


def absorb(db) -> int:
    with db.begin() as conn:
        return conn.scalar(text("SELECT subscription_current_status_absorb()"))


def history_row(db, sub_id, status_id, effect_date, create_date=None, row_id=None) -> str:
    return builders.subscription_status(db, sub_id, status_id, effect_date, create_date, row_id)


def test_inserts_back_dated_and_future_rows_are_seen_at_every_instant(db, now):
    # Given subscriptions with history written one row at a time and several rows at once
    club = builders.club(db)
    present = real_now()
    a = builders.subscription(db, club)
    b = builders.subscription(db, club, status_id=None)
    c = builders.subscription(db, club, status_id=3)
    # When a cancellation is scheduled, a back-dated reactivation and pause arrive
    history_row(db, a, 2, present + timedelta(days=2))
    history_row(db, b, 1, datetime(2018, 1, 1))
    history_row(db, b, 3, present - timedelta(days=1))
    sql(
        db,
        "INSERT INTO subscription_status_history (id, subscription_id, status_id, effect_date)"
        " VALUES (gen_random_uuid()::text, :c, 1, :d1), (gen_random_uuid()::text, :c, 2, :d2)",
        c=c,
        d1=present - timedelta(days=5),
        d2=present + timedelta(days=30),
    )
    # Then the endpoint agrees with the rule at every instant, whole and paged
    assert_exact(db, now)


def test_updates_of_status_dates_and_owner_are_followed(db, now):
    # Given two active subscriptions
    club = builders.club(db)
    present = real_now()
    a = builders.subscription(db, club)
    b = builders.subscription(db, club)
    row = history_row(db, a, 2, present + timedelta(days=1))
    # When the scheduled cancellation is moved back into the past
    sql(
        db,
        "UPDATE subscription_status_history SET effect_date = :d WHERE id = :r",
        d=present - timedelta(days=1),
        r=row,
    )
    assert_exact(db, now)
    # And forth again, far into the future
    sql(
        db,
        "UPDATE subscription_status_history SET effect_date = :d WHERE id = :r",
        d=present + timedelta(days=60),
        r=row,
    )
    assert_exact(db, now)
    # And its status changes, then it moves to the other subscription, dated now
    sql(db, "UPDATE subscription_status_history SET status_id = 3 WHERE id = :r", r=row)
    sql(
        db,
        "UPDATE subscription_status_history SET subscription_id = :b, effect_date = :d"
        " WHERE id = :r",
        b=b,
        d=present - timedelta(hours=1),
        r=row,
    )
    # Then every answer is the rule's
    assert_exact(db, now)
    now(present)
    assert endpoint_answer() == [a]


def test_deletes_copy_and_null_dates_are_followed(db, now):
    # Given subscriptions with history
    club = builders.club(db)
    present = real_now()
    subs = sorted(builders.subscription(db, club) for _ in range(4))
    cancel = history_row(db, subs[0], 2, present - timedelta(days=1))
    # When the cancellation is deleted, one subscription's history is emptied,
    sql(db, "DELETE FROM subscription_status_history WHERE id = :r", r=cancel)
    sql(db, "DELETE FROM subscription_status_history WHERE subscription_id = :s", s=subs[1])
    # and rows are bulk-loaded with COPY: a pause, a future cancellation, a NULL-dated row
    raw = db.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.copy_expert(
                "COPY subscription_status_history (id, subscription_id, status_id, effect_date,"
                " create_date) FROM STDIN",
                io.StringIO(
                    f"{uuid.uuid4()}\t{subs[2]}\t3\t{present - timedelta(minutes=5)}\t\\N\n"
                    f"{uuid.uuid4()}\t{subs[3]}\t2\t{present + timedelta(days=10)}\t\\N\n"
                    f"{uuid.uuid4()}\t{subs[3]}\t2\t\\N\t\\N\n"
                    f"{uuid.uuid4()}\t{subs[1]}\t1\t\\N\t\\N\n"
                ),
            )
        raw.commit()
    finally:
        raw.close()
    # Then the endpoint follows, and a subscription whose history is only NULL-dated has none
    assert_exact(db, now)
    now(present)
    assert endpoint_answer() == sorted([subs[0], subs[3]])


def test_scheduled_changes_fall_due_without_any_refresh(db, now):
    # Given a pause with an automatic return and a cancellation, both still in the future
    club = builders.club(db)
    present = real_now()
    paused = builders.subscription(db, club, status_id=3, effect_date=present - timedelta(days=1))
    history_row(db, paused, 1, present + timedelta(days=5))
    leaving = builders.subscription(db, club)
    history_row(db, leaving, 2, present + timedelta(days=5))
    # When the clock passes their date (the cache still holds the answer computed before)
    now(present + timedelta(days=5))
    # Then the changes count from their instant
    assert endpoint_answer() == [paused]
    assert_exact(db, now)


def test_club_writes_and_subscriptions_moving_club_are_followed(db, now):
    # Given members of an active club and of a club that closes and then retires
    present = real_now()
    open_club = builders.club(db)
    retiring = builders.club(db)
    a = builders.subscription(db, open_club)
    b = builders.subscription(db, retiring)
    builders.club_status(db, retiring, 2, present - timedelta(days=1))
    builders.club_status(db, retiring, 3, present + timedelta(days=7))
    assert_exact(db, now)
    # When an operator moves a to the retiring club and b to no club, then b back
    sql(db, "UPDATE subscription SET club_id = :c WHERE id = :s", c=retiring, s=a)
    sql(db, "UPDATE subscription SET club_id = NULL WHERE id = :s", s=b)
    assert_exact(db, now)
    sql(db, "UPDATE subscription SET club_id = :c WHERE id = :s", c=open_club, s=b)
    # Then every answer is the rule's
    assert_exact(db, now)


def test_deleting_subscriptions_and_truncating_cascade_empty_the_answer(db, now):
    # Given eligible subscriptions
    club = builders.club(db)
    subs = [builders.subscription(db, club) for _ in range(3)]
    # When an operator deletes one (history first, then the row)
    sql(db, "DELETE FROM subscription_status_history WHERE subscription_id = :s", s=subs[0])
    sql(db, "DELETE FROM subscription WHERE id = :s", s=subs[0])
    assert_exact(db, now)
    # And truncates the history, then re-adds a row, then truncates everything with CASCADE
    sql(db, "TRUNCATE subscription_status_history")
    assert_exact(db, now)
    assert builders.count(db, "subscription_current_status") == 0
    history_row(db, subs[1], 1, datetime(2020, 1, 1))
    assert_exact(db, now)
    sql(db, "TRUNCATE club CASCADE")
    # Then nothing is eligible and nothing is cached
    assert_exact(db, now)
    assert builders.count(db, "subscription_current_status") == 0


def test_the_cache_holds_the_rules_answer_at_the_present_after_writes(db, now):
    # Given writes of several kinds
    club = builders.club(db)
    present = real_now()
    a = builders.subscription(db, club)
    history_row(db, a, 3, present - timedelta(days=2))
    history_row(db, a, 1, present + timedelta(days=2))
    b = builders.subscription(db, club, status_id=2)
    # When the writes are absorbed (the endpoint does it before its first page) and the
    # cache is read at the present
    absorb(db)
    with db.connect() as conn:
        rows = {
            r.subscription_id: r
            for r in conn.execute(text("SELECT * FROM subscription_current_status"))
        }
    # Then each row holds now, with the rule's status and the next change as its end
    assert rows[a].status_id == 3
    assert rows[a].valid_from == present - timedelta(days=2)
    assert rows[a].valid_until == present + timedelta(days=2)
    assert rows[b].status_id == 2
    assert rows[b].valid_until is None


def test_rebuild_and_refresh_due_reproduce_what_the_triggers_maintain(db, now):
    # Given a cache that absorbed what the triggers marked
    club = builders.club(db)
    present = real_now()
    for i in range(5):
        sub = builders.subscription(db, club, status_id=1 + i % 3)
        history_row(db, sub, 2, present + timedelta(days=i + 1))
    absorb(db)
    with db.connect() as conn:
        before = conn.execute(text("SELECT * FROM subscription_current_status ORDER BY 1")).all()
    # When operators rebuild it and refresh the due rows
    with db.begin() as conn:
        written = conn.scalar(text("SELECT subscription_current_status_rebuild()"))
        refreshed = conn.scalar(text("SELECT subscription_current_status_refresh_due()"))
    with db.connect() as conn:
        after = conn.execute(text("SELECT * FROM subscription_current_status ORDER BY 1")).all()
    # Then the table is the same, and nothing was due
    assert written == 5
    assert refreshed == 0
    assert after == before
    assert_exact(db, now)


def test_random_sequences_of_sql_writes_keep_the_answer_exact(db, now):
    # Given a seeded random mix of plain SQL writes over a few clubs and subscriptions
    rng = random.Random(20261122)
    present = real_now()
    clubs = [builders.club(db, status_id=rng.choice([1, 2, 3])) for _ in range(3)]
    subs = [builders.subscription(db, rng.choice(clubs), status_id=None) for _ in range(12)]
    rows: list[str] = []

    def some_date():
        return rng.choice(
            [
                None,
                datetime(2019, 1, 1),
                present - timedelta(days=rng.randint(0, 30), minutes=rng.randint(0, 600)),
                present + timedelta(days=rng.randint(0, 30), minutes=rng.randint(1, 600)),
            ]
        )

    for step in range(60):
        action = rng.choice(["insert", "insert", "insert", "update", "move", "delete", "club"])
        if action == "insert" or not rows:
            rows.append(
                history_row(
                    db,
                    rng.choice(subs),
                    rng.choice([1, 1, 2, 3]),
                    some_date(),
                    rng.choice([None, present]),
                )
            )
        elif action == "update":
            sql(
                db,
                "UPDATE subscription_status_history SET effect_date = :d, status_id = :s"
                " WHERE id = :r",
                d=some_date(),
                s=rng.choice([1, 2, 3]),
                r=rng.choice(rows),
            )
        elif action == "move":
            sql(
                db,
                "UPDATE subscription_status_history SET subscription_id = :s WHERE id = :r",
                s=rng.choice(subs),
                r=rng.choice(rows),
            )
        elif action == "delete":
            sql(db, "DELETE FROM subscription_status_history WHERE id = :r", r=rows.pop())
        else:
            sql(
                db,
                "UPDATE subscription SET club_id = :c WHERE id = :s",
                c=rng.choice(clubs),
                s=rng.choice(subs),
            )
        # Then after every few writes the endpoint is the rule at every instant
        if step % 6 == 5:
            assert_exact(db, now, [present, some_date() or present, present + timedelta(31)])
    assert_exact(db, now)


def test_the_operators_rebuild_command_restores_a_cache_written_around(db, now, monkeypatch):
    # Given history written with the triggers off (as a restore does) and a wiped cache
    from scripts import rebuild_status

    club, closing = builders.club(db), builders.club(db)
    subs = [builders.subscription(db, club) for _ in range(3)]
    members = [builders.subscription(db, closing) for _ in range(2)]
    absorb(db)
    now(real_now())
    assert paged_answer() == sorted(subs + members)  # (a container's guess of the clubs)
    with db.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text(
                "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
                " effect_date) VALUES ('restored', :s, 2, '2021-01-01')"
            ),
            {"s": subs[0]},
        )
        conn.execute(
            text("DELETE FROM subscription_current_status WHERE subscription_id = :s"),
            {"s": subs[1]},
        )
        builders.club_status(conn, closing, 3, real_now() - timedelta(minutes=1))
    now(real_now())
    assert endpoint_answer() != rule_answer(db, real_now())
    # When the operator runs make rebuild-status
    monkeypatch.setenv("DATABASE_URL", db.url.render_as_string(hide_password=False))
    assert rebuild_status.main() == 0
    # Then the endpoint is the rule again, from the next page on (the club's members too)
    present = real_now()
    now(present)
    assert paged_answer() == rule_answer(db, present)
    assert not set(members) & set(rule_answer(db, present))
    assert_exact(db, now)


def test_writes_only_mark_subscriptions_and_the_first_page_absorbs_them(db, now):
    # Given an absorbed cache
    club = builders.club(db)
    sub = builders.subscription(db, club)
    absorb(db)
    # When an operator cancels the subscription with plain SQL
    history_row(db, sub, 2, datetime(2026, 1, 1))
    # Then the write only marked it dirty, the cache row is untouched, yet the answer is exact
    assert builders.count(db, "subscription_status_dirty", "subscription_id = :s", s=sub) == 1
    assert builders.count(db, "subscription_current_status", "status_id = 1") == 1
    now(datetime(2026, 11, 21, 12))
    assert paged_answer() == rule_answer(db, datetime(2026, 11, 21, 12)) == []
    # And a first page absorbs the mark into the cache
    assert endpoint_answer() == []
    assert builders.count(db, "subscription_status_dirty") == 0
    assert builders.count(db, "subscription_current_status", "status_id = 2") == 1


def test_a_truncate_marks_everything_and_reads_stay_exact_until_absorbed(db, now):
    # Given an absorbed cache with an eligible subscription
    club = builders.club(db)
    builders.subscription(db, club)
    absorb(db)
    # When the history is truncated by an operator, while another absorber is busy
    sql(db, "TRUNCATE subscription_status_history")
    now(datetime(2026, 11, 21, 12))
    with db.connect() as busy:
        busy.execute(text("SELECT 1 FROM subscription_status_absorber FOR UPDATE"))
        # Then the whole table is marked, and answers computed meanwhile are exact
        assert builders.count(db, "subscription_status_dirty", "subscription_id IS NULL") == 1
        assert endpoint_answer() == []
        assert paged_answer() == []
        busy.rollback()
    # And once absorbed, the cache is rebuilt from the (empty) history
    absorb(db)
    assert builders.count(db, "subscription_current_status") == 0
    assert builders.count(db, "subscription_status_dirty") == 0


def test_a_busy_absorber_leaves_the_work_to_the_other(db, database_url, now):
    # Given one absorber holding the cache lock in an open transaction
    club = builders.club(db)
    builders.subscription(db, club)
    with db.connect() as holder:
        holder.execute(text("SELECT 1 FROM subscription_status_absorber FOR UPDATE"))
        # When a second one runs
        skipped = absorb(db)
        holder.rollback()
    # Then it returns at once without doing anything, and the marks stay for later
    assert skipped == -1
    assert builders.count(db, "subscription_status_dirty") > 0


def test_the_first_page_recomputes_rows_whose_scheduled_change_took_effect(db, now):
    # Given a cancellation that took effect an hour ago, and the cache row as it was
    # computed before that: ACTIVE until the cancellation (the due path, nothing marked)
    club = builders.club(db)
    sub = builders.subscription(db, club, effect_date=datetime(2020, 1, 1))
    present = real_now()
    history_row(db, sub, 2, present - timedelta(hours=1))
    absorb(db)
    sql(
        db,
        "UPDATE subscription_current_status SET status_id = 1, valid_from = '2020-01-01',"
        " valid_until = :until WHERE subscription_id = :s",
        until=present - timedelta(hours=1),
        s=sub,
    )
    now(present)
    # When the billing operation asks for a first page
    # Then the answer is the rule's, and the row is recomputed: CANCELLED from then on
    assert endpoint_answer({"limit": "10"}) == rule_answer(db, present) == []
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT * FROM subscription_current_status WHERE subscription_id = :s"),
            {"s": sub},
        ).one()
    assert (row.status_id, row.valid_from, row.valid_until) == (
        2,
        present - timedelta(hours=1),
        None,
    )
    # And the next absorber has nothing left to do
    assert absorb(db) == 0


def test_a_first_page_needs_only_the_one_connection_a_lambda_holds(db, now, monkeypatch):
    # Given a pool of one connection and no overflow, as each deployed function has
    from common import settings
    from repositories import database

    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    settings.get.cache_clear()
    database.reset()
    club = builders.club(db)
    sub = builders.subscription(db, club)
    now(real_now())
    try:
        # When a first page absorbs the marks and then reads, and a next page follows
        # Then both answer (the absorber does not wait for a second connection)
        assert endpoint_answer({"limit": "1"}) == [sub]
        assert endpoint_answer({"limit": "1", "after": sub}) == []
        assert builders.count(db, "subscription_status_dirty") == 0
    finally:
        monkeypatch.undo()
        settings.get.cache_clear()
        database.reset()
