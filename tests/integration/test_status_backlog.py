"""The current-status cache under bulk writes (issue 14, docs/eligible-cache.md).

- the incremental path on its own: writes after a first read, folded in by the absorber's
  slices (never a rebuild), with ties on effect_date between a row that has a create_date
  and one whose create_date is NULL (the rule ranks NULL lowest);
- the three read paths (cache, cache + marked rows live within the page, plain rule) give
  the rule's answer, and the backlog decides which one serves;
- the scheduled absorber (slices, rebuild, vacuum), in the cloud handler and locally; it
  never makes a writer wait.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from repositories import eligible_pages
from repositories.status_absorber import Absorber
from tests import builders
from tests.integration.test_eligible_cache import (
    absorb,
    assert_exact,
    endpoint_answer,
    paged_answer,
    real_now,
    rule_answer,
    sql,
)

TIE = datetime(2026, 6, 1, 9, 30)


def cache_row(db, sub: str):
    with db.connect() as conn:
        return conn.execute(
            text(
                "SELECT status_id, valid_from, valid_until FROM subscription_current_status"
                " WHERE subscription_id = :s"
            ),
            {"s": sub},
        ).first()


def rule_status(db, sub: str, at: datetime):
    with db.connect() as conn:
        return conn.scalar(
            text(
                "SELECT status_id FROM subscription_status_history"
                " WHERE subscription_id = :s AND effect_date <= :at"
                " ORDER BY effect_date DESC, create_date DESC NULLS LAST, id DESC LIMIT 1"
            ),
            {"s": sub, "at": at},
        )


def backlog(db):
    with db.connect() as conn:
        return conn.scalar(text("SELECT subscription_current_status_backlog()"))


@pytest.fixture
def absorbed(db, now):
    """Thirty subscriptions in one club, read once (the cache absorbed them), no marks left."""
    club = builders.club(db)
    subs = sorted(builders.subscription(db, club) for _ in range(30))
    now(real_now())
    assert endpoint_answer() == subs
    assert backlog(db) == 0
    return club, subs


@pytest.fixture
def no_request_absorb(monkeypatch):
    """Pages absorb nothing themselves: what a large backlog looks like to a request."""
    monkeypatch.setattr(eligible_pages, "REQUEST_ABSORB_BACKLOG", 0)


@pytest.fixture
def paths(monkeypatch):
    """The read path each page took."""
    taken: list[str] = []
    choose = eligible_pages.eligible_path

    def spy(*args):
        taken.append(choose(*args))
        return taken[-1]

    monkeypatch.setattr(eligible_pages, "eligible_path", spy)
    return taken


def tie_rows(db, sub: str, dated_status: int, undated_status: int) -> None:
    """Two rows on the same effect_date: one with a create_date, one without. The undated
    row gets the greater id, so only the NULL ranking separates them."""
    builders.subscription_status(db, sub, dated_status, TIE, TIE, row_id=f"a-{uuid.uuid4().hex}")
    builders.subscription_status(db, sub, undated_status, TIE, None, row_id=f"z-{uuid.uuid4().hex}")


def test_writes_after_a_first_read_are_folded_in_by_slices_with_null_create_dates_lowest(
    db, now, absorbed
):
    # Given a cache that absorbed its subscriptions at a first read
    _, subs = absorbed
    kept_active, kept_paused = subs[3], subs[7]
    # When, after that read, each gets two rows on one effect_date, one of them undated:
    # the dated one counts (ACTIVE for the first, PAUSED for the second)
    tie_rows(db, kept_active, dated_status=1, undated_status=2)
    tie_rows(db, kept_paused, dated_status=2, undated_status=1)
    assert backlog(db) == 4  # two statements per subscription, one mark each
    # Then the absorber's incremental path (not a rebuild: nothing says "everything")
    # takes exactly those marks and writes the rule's answer for both
    assert absorb(db) == 2
    present = real_now()
    for sub, status in ((kept_active, 1), (kept_paused, 2)):
        assert rule_status(db, sub, present) == status
        assert cache_row(db, sub).status_id == status, sub
        assert cache_row(db, sub).valid_from == TIE
    # And the endpoint, reading the cache alone now, agrees with the rule
    now(present)
    assert endpoint_answer() == rule_answer(db, present)
    assert kept_active in endpoint_answer()
    assert kept_paused not in endpoint_answer()


def test_marked_rows_are_computed_live_within_each_page_until_absorbed(
    db, now, absorbed, no_request_absorb, paths
):
    # Given an absorbed cache, then writes after the first read that pages do not absorb:
    # ties with undated rows, a pause, a scheduled change, a reactivation
    club, subs = absorbed
    tie_rows(db, subs[0], dated_status=2, undated_status=1)
    tie_rows(db, subs[10], dated_status=1, undated_status=3)
    builders.subscription_status(db, subs[20], 2, real_now() - timedelta(hours=1))
    builders.subscription_status(db, subs[29], 3, real_now() + timedelta(days=2))
    late = builders.subscription(db, club, status_id=1, effect_date=datetime(2026, 1, 1))
    # When every page is read, pages of 3 and whole, at several instants
    # Then each answer is the rule's, through the cache plus the marked rows live
    assert_exact(db, now)
    assert set(paths) == {"mixed"}
    assert late in rule_answer(db, real_now())
    assert cache_row(db, late) is None  # never absorbed: computed live every time


def test_a_large_backlog_is_answered_with_the_plain_rule(
    db, now, absorbed, no_request_absorb, paths, monkeypatch
):
    # Given more marks than the share of the cache a page computes live
    _, subs = absorbed
    sql(
        db,
        "INSERT INTO subscription_status_history (id, subscription_id, status_id, effect_date,"
        " create_date) SELECT gen_random_uuid()::text, id, 2, :e, NULL FROM subscription"
        " WHERE id <= :last",
        e=TIE,
        last=subs[15],
    )
    tie_rows(db, subs[20], dated_status=2, undated_status=1)
    monkeypatch.setattr(eligible_pages, "MIX_FLOOR", 5)
    # When every page is read
    # Then the answers are the rule's, page by page over the history
    assert_exact(db, now)
    assert set(paths) == {"rule"}


def test_everything_marked_is_answered_with_the_plain_rule_until_the_absorber_rebuilds(
    db, now, absorbed, no_request_absorb, paths
):
    # Given an operator's TRUNCATE of the history (everything marked) and new rows
    _, subs = absorbed
    sql(db, "TRUNCATE subscription_status_history")
    tie_rows(db, subs[1], dated_status=1, undated_status=2)
    assert backlog(db) is None
    now(real_now())
    assert paged_answer() == rule_answer(db, real_now()) == [subs[1]]
    assert set(paths) == {"rule"}
    # When the scheduled absorber runs
    summary = Absorber(db).run(budget=0)
    # Then it rebuilt the cache, and pages read the cache alone again
    assert summary.rebuilds == 1
    assert backlog(db) == 0
    paths.clear()
    assert paged_answer() == [subs[1]]
    assert set(paths) == {"cache"}


def test_the_path_follows_the_backlog():
    path = eligible_pages.eligible_path
    assert path(0, 0, 1_000_000) == "cache"
    assert path(None, 0, 1_000_000) == "rule"
    assert path(1, 0, 1_000_000) == "mixed"
    assert path(0, 1, 1_000_000) == "mixed"
    assert path(100_000, 0, 1_000_000) == "mixed"
    assert path(100_001, 0, 1_000_000) == "rule"
    assert path(60_000, 40_001, 1_000_000) == "rule"
    # A cache never analyzed (-1) or small: up to MIX_FLOOR marks are computed live
    assert path(eligible_pages.MIX_FLOOR, 0, -1) == "mixed"
    assert path(eligible_pages.MIX_FLOOR + 1, 0, 100) == "rule"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_scheduled_absorber_takes_a_bulk_write_in_slices_then_vacuums(
    db, now, absorbed, monkeypatch
):
    # Given one statement that paused every subscription of the club after a first read
    _, subs = absorbed
    sql(
        db,
        "INSERT INTO subscription_status_history (id, subscription_id, status_id, effect_date,"
        " create_date) SELECT gen_random_uuid()::text, id, 2, :e, :e FROM subscription",
        e=real_now() - timedelta(minutes=1),
    )
    assert backlog(db) == 30
    monkeypatch.setattr("repositories.status_absorber.VACUUM_AFTER", 25)
    # (every row marked: by default one rebuild would be cheaper than slices)
    monkeypatch.setattr("repositories.status_absorber.REBUILD_SHARE", 1.0)
    clock = FakeTime()
    # When the absorber runs with slices of 8 for a budget of 10 s, polling every 2 s
    summary = Absorber(db, slice_=8, monotonic=clock.monotonic, sleep=clock.sleep).run(10, 2)
    # Then it took the marks in four slices, no rebuild, then vacuumed the cache once
    assert (summary.slices, summary.rebuilds, summary.vacuums) == (4, 0, 1)
    assert summary.absorbed == 30
    assert summary.last_backlog == 0
    # And waited for more work until its budget ran out
    assert clock.sleeps == [2, 2, 2, 2]
    # And the cache is the rule's answer, every page all-visible (index-only scans)
    with db.connect() as conn:
        pages, visible = conn.execute(
            text(
                "SELECT relpages, relallvisible FROM pg_class"
                " WHERE oid = 'subscription_current_status'::regclass"
            )
        ).one()
    assert pages > 0
    assert visible == pages
    present = real_now()
    assert all(cache_row(db, s).status_id == 2 for s in subs)
    now(present)
    assert endpoint_answer() == rule_answer(db, present) == []


def cache_heap_fetches(db) -> int:
    """Heap visits of an index-only scan over the whole cache: 0 when every page is
    all-visible (pg_class.relallvisible is only refreshed by VACUUM or ANALYZE)."""
    with db.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_bitmapscan = off"))
        plan = conn.scalar(
            text(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT subscription_id, status_id"
                " FROM subscription_current_status ORDER BY subscription_id"
            )
        )[0]["Plan"]
    assert plan["Node Type"] == "Index Only Scan"
    return plan["Heap Fetches"]


def test_each_slice_leaves_the_cache_all_visible(db, absorbed, monkeypatch):
    # Given a bulk write after a first read, and the cache all-visible
    _, subs = absorbed
    Absorber(db).vacuum()
    assert cache_heap_fetches(db) == 0
    sql(
        db,
        "INSERT INTO subscription_status_history (id, subscription_id, status_id, effect_date,"
        " create_date) SELECT gen_random_uuid()::text, id, 2, :e, :e FROM subscription",
        e=real_now() - timedelta(minutes=1),
    )
    # When the absorber takes one slice of 8 of its 30 marks (every row marked: by default
    # one rebuild would be cheaper than slices)
    monkeypatch.setattr("repositories.status_absorber.REBUILD_SHARE", 1.0)
    assert Absorber(db, slice_=8).step() == ("slice", 8)
    # Then readers' index-only scans stay index-only while the rest waits
    assert backlog(db) == 22
    assert cache_heap_fetches(db) == 0
    assert sum(cache_row(db, s).status_id == 2 for s in subs) == 8


def test_the_absorber_never_makes_a_writer_wait(db, absorbed):
    # Given marks, and an absorber inside its transaction (lock held, cache rows written)
    _, subs = absorbed
    builders.subscription_status(db, subs[0], 2, datetime(2026, 2, 1))
    with db.connect() as absorbing:
        absorbing.begin()
        assert absorbing.scalar(text("SELECT subscription_current_status_absorb()")) == 1
        # When writers touch the same subscription and its history meanwhile
        with db.begin() as writer:
            writer.execute(text("SET LOCAL lock_timeout = '2s'"))
            writer.execute(
                text(
                    "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
                    " effect_date) VALUES (gen_random_uuid()::text, :s, 1, :e)"
                ),
                {"s": subs[0], "e": datetime(2026, 3, 1)},
            )
            writer.execute(
                text("DELETE FROM subscription_status_history WHERE subscription_id = :s"),
                {"s": subs[1]},
            )
        # Then they committed at once; a second absorber leaves the work to the first
        assert Absorber(db).step() == ("busy", 0)
        absorbing.rollback()
    assert Absorber(db).run(budget=0).last_backlog == 0


def test_the_cloud_handler_and_the_local_loop_absorb(db, absorbed, monkeypatch, capsys):
    from handlers import absorb_status
    from scripts import absorb_status as local
    from tests.events import LambdaContext

    _, subs = absorbed
    builders.subscription_status(db, subs[0], 2, datetime(2026, 2, 1))
    # When the scheduled function runs (a budget of 0: one pass)
    monkeypatch.setenv("ABSORB_BUDGET_SECONDS", "0")
    result = absorb_status.lambda_handler({}, LambdaContext())
    # Then it absorbed the mark
    assert result["absorbed"] == 1
    assert result["last_backlog"] == 0
    assert cache_row(db, subs[0]).status_id == 2
    # And the local equivalent (scripts/serve.sh runs it with --loop) does the same
    builders.subscription_status(db, subs[1], 3, datetime(2026, 2, 1))
    assert local.main(["--budget", "0"]) == 0
    assert '"absorbed": 1' in capsys.readouterr().out
    assert cache_row(db, subs[1]).status_id == 3


def test_a_statement_writing_many_rows_marks_everything_once(db, now, absorbed, no_request_absorb):
    # Given a session whose threshold is 10 rows (200,000 by default)
    _, subs = absorbed
    with db.begin() as conn:
        conn.execute(text("SET LOCAL beer_club.mark_everything_above = '10'"))
        # When one statement writes 30 history rows, and another 5
        conn.execute(
            text(
                "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
                " effect_date) SELECT gen_random_uuid()::text, id, 2, :e FROM subscription"
            ),
            {"e": datetime(2026, 2, 1)},
        )
        conn.execute(
            text("DELETE FROM subscription_status_history WHERE subscription_id <= :s"),
            {"s": subs[4]},
        )
    # Then the first left one mark meaning "everything", the second one mark each
    assert builders.count(db, "subscription_status_dirty", "subscription_id IS NULL") == 1
    assert builders.count(db, "subscription_status_dirty", "subscription_id IS NOT NULL") == 5
    # And the answers stay exact; the absorber rebuilds
    assert_exact(db, now)
    assert Absorber(db).run(budget=0).rebuilds == 1
    assert_exact(db, now)


# For plans of the tiny test tables: once analyzed, a sequential scan is their best plan;
# at scale the indexes are, and that is the plan a test reads.
NO_SEQSCAN = text("SET LOCAL enable_seqscan = off")


def plan_of(db, statement, params: dict, settings=None) -> str:
    """EXPLAIN of one of the endpoint's page statements, in a transaction of its own."""
    from sqlalchemy.dialects import postgresql

    compiled = statement.compile(dialect=postgresql.psycopg2.dialect())
    with db.connect() as conn, conn.begin():
        if settings is not None:
            conn.execute(settings, params)  # takes the parameters it names
        rows = conn.exec_driver_sql(
            "EXPLAIN (COSTS OFF) " + str(compiled), compiled.construct_params(params)
        )
        return "\n".join(r[0] for r in rows)


def test_a_rule_page_reads_the_history_alone_and_only_the_members_of_clubs_that_do_not_ship(
    db, absorbed, now
):
    # Given a round of the plain rule's page after a first id (its plan is forced, whatever
    # the statistics say: right after a bulk load there are none)
    _, subs = absorbed
    params = {
        "at": real_now(),
        "after": subs[4],
        "limit": 10,
        "elsewhere": "{7,9}",
        "shipping": "{1}",
    }
    plan = plan_of(
        db, eligible_pages._RULE_ROUND_AFTER.statement, params, eligible_pages._RULE_START
    )
    lines = plan.splitlines()
    # Then the ACTIVE ids come from the history's covering index alone, from the first id
    # on, in its order: no join reads every subscription's club (right after a bulk load,
    # before a VACUUM, that visits subscription's heap once per subscription: 1.4 times
    # the plain DISTINCT ON)
    history = next(i for i, line in enumerate(lines) if "ix_subscription_status_history" in line)
    assert "Index Only Scan" in lines[history], plan
    assert subs[4] in lines[history + 1], plan
    assert "Join" not in plan, plan
    assert "Nested Loop" not in plan, plan
    assert "Sort" not in plan.replace("Sort Key", ""), plan
    assert "Seq Scan" not in plan, plan
    # And the members to leave out are found by club and id range through
    # subscription (club_id, id), up to the round's last id: only the clubs that do not
    # ship (and no club) are read
    scans = [i for i, line in enumerate(lines) if re.search(r" on subscription( \w+)?$", line)]
    assert len(scans) == 2, plan
    for i in scans:
        assert "Index Only Scan using ix_subscription_club_id" in lines[i], plan
        assert "Index Cond" in lines[i + 1], plan
        assert subs[4] in lines[i + 1], plan
        assert "agg.last" in lines[i + 1], plan
    assert "club_id = ANY" in lines[scans[0] + 1], plan
    assert "club_id IS NULL" in lines[scans[1] + 1], plan


def test_a_rule_page_leaves_out_the_members_of_clubs_that_do_not_ship_wherever_they_fall(
    db, now, no_request_absorb, paths, monkeypatch
):
    # Given members of a shipping club among many more of clubs that do not ship (closed
    # for good, no status, one that stops shipping in a few days) and of no club, none of
    # them absorbed yet, and a backlog the plain rule answers
    ships = builders.club(db, status_id=1)
    closed = builders.club(db, status_id=2)
    inactive = builders.club(db, status_id=3)
    unknown = builders.club(db, status_id=None)
    stopping = builders.club(db, status_id=1)
    builders.club_status(db, stopping, 3, real_now() + timedelta(days=2))
    for club, count in ((ships, 4), (closed, 2), (inactive, 9), (unknown, 7), (None, 5)):
        for _ in range(count):
            builders.subscription(db, club)
    for _ in range(4):
        builders.subscription(db, stopping)
    builders.subscription(db, ships, status_id=3)
    monkeypatch.setattr(eligible_pages, "MIX_FLOOR", 0)
    # When every page is read, whole and in pages of 1 to 5, at several instants
    # Then every page holds at most its limit and the listing is the rule's answer
    assert_exact(db, now)
    for at in (real_now(), real_now() + timedelta(days=3)):
        now(at)
        expected = rule_answer(db, at)
        assert len(expected) == (10 if at <= real_now() else 6)
        for limit in range(1, 6):
            pages, after = [], None
            while not pages or len(pages[-1]) == limit:
                pages.append(
                    endpoint_answer({"limit": str(limit)} | ({"after": after} if after else {}))
                )
                after = pages[-1][-1] if pages[-1] else None
            assert all(len(page) <= limit for page in pages), (limit, pages)
            assert [i for page in pages for i in page] == expected, (at, limit)
    assert set(paths) == {"rule"}


def test_a_mixed_page_reads_the_marks_from_its_own_first_id(db, absorbed, now):
    # Given marks on both sides of a page's first id
    club, subs = absorbed
    for sub in (subs[1], subs[20]):
        builders.subscription_status(db, sub, 2, real_now() - timedelta(hours=1))
    params = {"at": real_now(), "shipping": f"{{{club}}}", "after": subs[10], "limit": 10}
    plan = plan_of(db, eligible_pages._CACHED_AFTER.joined, params, NO_SEQSCAN)
    # Then the cache page's anti-join reads the marks from the page's first id on, not from
    # the first mark (which made a listing's cost grow with the square of the backlog)
    lines = plan.splitlines()
    marks = [i for i, line in enumerate(lines) if "ix_subscription_status_dirty_id" in line]
    assert marks, plan
    bounded = [i for i in marks if "Index Cond" in lines[i + 1] and subs[10] in lines[i + 1]]
    assert bounded, plan


def test_a_rule_page_first_asks_for_the_share_left_out_and_a_margin():
    first_round = eligible_pages._first_round
    # Every club ships: exactly the page
    assert first_round(10_000, 0.0) == 10_000
    # 14% of the members left out: the expected 11,628 ids and three standard deviations
    # (about 3 x 37), so a second round is rare and an id read beyond the page is too
    assert 11_628 + 100 < first_round(10_000, 0.14) < 11_628 + 125
    # Nearly nothing ships: at most ten pages in one round
    assert first_round(10_000, 0.95) == 100_000
    assert first_round(1, 0.5) == 5


def test_a_rule_page_brings_odd_ids_back_whole(db, now, no_request_absorb, paths, monkeypatch):
    # Given ids holding newlines, quotes or any text, in a club that ships and in one that
    # does not, none absorbed, and a backlog the plain rule answers
    from tests.integration.test_eligible import ODD_IDS

    ships, closed = builders.club(db, status_id=1), builders.club(db, status_id=3)
    for n, sub_id in enumerate(ODD_IDS):
        builders.subscription(db, ships if n % 2 else closed, sub_id=sub_id)
        builders.subscription(db, closed if n % 2 else ships, sub_id=f"{sub_id}-{n}")
    monkeypatch.setattr(eligible_pages, "MIX_FLOOR", 0)
    # When every page is read, whole and in pages of 3
    # Then every id comes back whole, once, in the database's order, as the rule lists them
    assert_exact(db, now, [real_now()])
    assert set(paths) == {"rule"}


def listed(statements: list[str], query: dict) -> tuple[list[str], list[str]]:
    statements.clear()
    answer = endpoint_answer(query)
    return answer, list(statements)


ONE_STATEMENT = ["SELECT count(*) AS cache_alone,"]


def test_a_page_of_the_cache_alone_is_one_statement_after_one_that_was(
    db, now, absorbed, statements
):
    # Given a page read from the cache alone
    _, subs = absorbed
    present = real_now()
    now(present)
    assert endpoint_answer({"limit": "10"}) == subs[:10]
    # When the next pages are asked
    # Then each is one statement on its own snapshot, and the rule's answer
    assert listed(statements, {"limit": "10", "after": subs[9]}) == (subs[10:20], ONE_STATEMENT)
    assert listed(statements, {"limit": "10", "after": subs[19]}) == (subs[20:], ONE_STATEMENT)
    # And past the last id, where the statement finds no row, the usual way says why
    answer, sent = listed(statements, {"limit": "10", "after": subs[29]})
    assert answer == []
    assert sent[0] == ONE_STATEMENT[0]
    assert len(sent) > 1, sent


CHANGES = [
    "club stops shipping",
    "a club change falls due",
    "a club write in flight at the guess",
    "a mark",
    "a scheduled change due",
    "a row begins after the instant asked",
    "asked before the guess's instant",
]


@pytest.mark.parametrize("change", CHANGES)
def test_a_page_whose_guess_no_longer_holds_goes_the_usual_way(
    db, now, absorbed, statements, paths, no_request_absorb, change
):
    # Given a page read from the cache alone, and a guess of what the next one needs (for
    # one case, made an hour ago, so that a row absorbed since can begin after the instant)
    _, subs = absorbed
    present = real_now()
    other = builders.club(db)
    moved = builders.subscription(db, other, effect_date=present - timedelta(days=1))
    assert absorb(db) == 1
    if change == "a club change falls due":
        builders.club_status(db, other, 3, present + timedelta(hours=1))
    in_flight = db.connect()
    if change == "a club write in flight at the guess":
        in_flight.begin()
        builders.club_status(in_flight, other, 3, present - timedelta(minutes=1))
    guessed_at = present - timedelta(hours=1) if change.startswith("a row begins") else present
    now(guessed_at)
    try:
        assert endpoint_answer({"limit": "5"}) == sorted([*subs, moved])[:5]
    finally:
        if in_flight.in_transaction():
            in_flight.commit()  # committed after the guess's snapshot was taken
        in_flight.close()
    # When what the guess stands for changes before the next page
    if change == "club stops shipping":
        builders.club_status(db, other, 3, present - timedelta(minutes=1))
    elif change == "a club change falls due":
        present += timedelta(hours=2)
    elif change == "a mark":
        builders.subscription_status(db, moved, 2, present - timedelta(minutes=1))
    elif change == "a scheduled change due":
        builders.subscription_status(db, moved, 3, present + timedelta(hours=1))
        absorb(db)
        present += timedelta(hours=2)
    elif change == "a row begins after the instant asked":
        # absorbed at the database's clock: the cache row of `moved` begins 30 minutes ago
        builders.subscription_status(db, moved, 2, present - timedelta(minutes=30))
        absorb(db)
        present -= timedelta(minutes=45)
    elif change == "asked before the guess's instant":
        present -= timedelta(days=2)
    now(present)
    paths.clear()
    answer, sent = listed(statements, {})
    # Then the page is read as before this change, with the rule's answer
    assert answer == rule_answer(db, present)
    assert (moved in answer) == (change == "a row begins after the instant asked")
    if change in ("a club change falls due", "asked before the guess's instant"):
        # (the guess's instants tell at once: the one statement is not sent)
        assert ONE_STATEMENT[0] not in sent, sent
    else:
        # (the one statement answers nothing, and the usual way follows)
        tried = sent.index(ONE_STATEMENT[0])
        assert len(sent) > tried + 1, sent
    usual = "cache" if "club" in change else "mixed"
    assert paths == [usual]


def test_pruning_the_club_writes_never_lets_an_earlier_guess_pass(
    db, now, absorbed, statements, paths, monkeypatch
):
    # Given a guess made while a write stopping a club was in flight, then committed
    from repositories import status_absorber

    _, subs = absorbed
    present = real_now()
    now(present)
    other = builders.club(db)
    moved = builders.subscription(db, other, effect_date=present - timedelta(days=1))
    assert absorb(db) == 1
    with db.connect() as in_flight:
        in_flight.begin()
        builders.club_status(in_flight, other, 3, present - timedelta(minutes=1))
        assert endpoint_answer({"limit": "5"}) == sorted([*subs, moved])[:5]
        in_flight.commit()
    # When the absorber, idle, empties the table of club writes (more rows than it keeps)
    monkeypatch.setattr(status_absorber, "CLUB_WRITES_KEPT", 2)
    assert Absorber(db).step() == ("idle", 0)
    with db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM club_write")) == 1
    # Then the next page still finds a write its guess could not see, and goes the usual way
    paths.clear()
    answer, sent = listed(statements, {})
    assert answer == rule_answer(db, present)
    assert moved not in answer
    assert sent.index(ONE_STATEMENT[0]) < len(sent) - 1, sent
    assert paths == ["cache"]


def test_the_one_statement_page_gives_its_connection_back_as_it_found_it(
    db, now, absorbed, statements
):
    # Given a page answered by the one statement (its connection in autocommit meanwhile)
    from repositories import database

    _, subs = absorbed
    now(real_now())
    assert endpoint_answer({"limit": "10"}) == subs[:10]
    assert listed(statements, {"limit": "10", "after": subs[9]})[1] == ONE_STATEMENT
    # When the pool's connections are taken again, by the next unit of work
    engine = database.engine()
    held = [engine.connect() for _ in range(engine.pool.checkedin())]
    try:
        # Then none is left in autocommit or another isolation level: their transactions
        # (a charge's, a claim's) still roll back as a whole
        for conn in held:
            dbapi = conn.connection.dbapi_connection
            assert dbapi.autocommit is False
            assert conn.get_isolation_level() == "READ COMMITTED"
    finally:
        for conn in held:
            conn.close()


def test_the_marked_rows_of_a_page_are_probed_for_their_status_before_their_club(db, absorbed, now):
    # Given marks within a page's range
    club, subs = absorbed
    for sub in (subs[12], subs[14]):
        builders.subscription_status(db, sub, 2, real_now() - timedelta(hours=1))
    params = {
        "at": real_now(),
        "shipping": f"{{{club}}}",
        "after": subs[10],
        "upper": subs[20],
        "limit": 10,
    }
    plan = plan_of(db, eligible_pages._LIVE_MARKS.joined, params, NO_SEQSCAN)
    # Then the status (the history's probe) filters the marks themselves, so a mark that is
    # not ACTIVE costs no probe of subscription
    lines = plan.splitlines()
    stale = next(i for i, line in enumerate(lines) if "Subquery Scan on stale" in line)
    assert "SubPlan" in lines[stale + 1], plan
    subscription = [line for line in lines if re.search(r" on subscription( \w+)?$", line)]
    assert subscription, plan
