"""GET /subscription/eligible against the migrated database."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import unquote

from sqlalchemy import text

from handlers import eligible
from tests import builders
from tests.events import api_event, invoke


def get(query=None):
    return invoke(eligible.lambda_handler, api_event("GET", "/subscription/eligible", query=query))


def test_eligible_lists_active_subscriptions_of_active_and_closed_clubs(db, now):
    # Given subscriptions in each status, in clubs in each status
    active_club, closed_club, inactive_club = (builders.club(db, s) for s in (1, 2, 3))
    statusless_club = builders.club(db, None)
    expected = {
        builders.subscription(db, active_club, status_id=1),
        builders.subscription(db, closed_club, status_id=1),
    }
    builders.subscription(db, active_club, status_id=2)
    builders.subscription(db, active_club, status_id=3)
    builders.subscription(db, active_club, status_id=None)
    builders.subscription(db, inactive_club, status_id=1)
    builders.subscription(db, statusless_club, status_id=1)
    # When the billing operation asks
    status, body, _ = get()
    # Then exactly the active subscriptions of shipping clubs come back, by id
    assert status == 200
    assert body == sorted(expected)


def test_scheduled_and_null_dated_rows_do_not_count_until_due(db, now):
    # Given an active subscription with a cancellation scheduled for tomorrow,
    # and a paused one whose only ACTIVE row has no effect_date
    club = builders.club(db)
    leaving = builders.subscription(db, club)
    builders.subscription_status(db, leaving, 2, datetime(2026, 11, 22))
    paused = builders.subscription(db, club, status_id=3)
    builders.subscription_status(db, paused, 1, None)
    # When eligible is asked today and tomorrow
    today = get()[1]
    now(datetime(2026, 11, 22))
    tomorrow = get()[1]
    # Then the cancellation counts only from its date, and the NULL-dated row never
    assert today == [leaving]
    assert tomorrow == []


def test_ties_on_effect_date_are_broken_by_create_date_then_id(db, now):
    # Given two rows with the same effect_date: the later-created one cancels
    club = builders.club(db)
    same = datetime(2026, 1, 1)
    a = builders.subscription(db, club, status_id=None)
    builders.subscription_status(db, a, 1, same, create_date=datetime(2026, 1, 2))
    builders.subscription_status(db, a, 2, same, create_date=datetime(2026, 1, 3))
    # And two rows with the same effect and create dates: the greater id is active
    b = builders.subscription(db, club, status_id=None)
    builders.subscription_status(db, b, 2, same, create_date=same, row_id="aaa")
    builders.subscription_status(db, b, 1, same, create_date=same, row_id="zzz")
    # And a NULL create_date loses to any date
    c = builders.subscription(db, club, status_id=None)
    builders.subscription_status(db, c, 1, same, create_date=datetime(2026, 1, 2))
    builders.subscription_status(db, c, 2, same, create_date=None)
    # When eligible is asked
    # Then only b and c are eligible
    assert get()[1] == sorted([b, c])


def test_a_club_closing_keeps_members_and_deactivating_drops_them(db, now):
    # Given a member of a club that closes today and later deactivates
    club = builders.club(db)
    sub = builders.subscription(db, club)
    builders.club_status(db, club, 2, datetime(2026, 11, 21))
    builders.club_status(db, club, 3, datetime(2026, 12, 1))
    # When eligible is asked before and after the deactivation
    # Then the member is eligible while closed, not once inactive
    assert get()[1] == [sub]
    now(datetime(2026, 12, 1))
    assert get()[1] == []


def test_keyset_pagination_walks_every_id_once_in_order(db, now):
    # Given 25 eligible subscriptions
    club = builders.club(db)
    ids = sorted(builders.subscription(db, club) for _ in range(25))
    # When they are fetched ten at a time, each page after the last id of the previous one
    pages, after = [], None
    while True:
        query = {"limit": "10"} | ({"after": after} if after else {})
        status, page, headers = get(query)
        assert status == 200
        pages.append(page)
        if len(page) < 10:
            assert "X-Next-After" not in headers
            break
        after = headers["X-Next-After"]
        assert after == page[-1]
    # Then the pages are 10, 10, 5 and together every id in order
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == ids
    # And `after` alone returns the rest
    assert get({"after": ids[19]})[1] == ids[20:]


# Ids are free text in the approved table: an operator may write any of these.
ODD_IDS = ["a\nb", "ends\n", "\n", 'quo"te', "back\\slash", "tab\tx", "ünïcödé", "x'; DROP --"]


def test_ids_holding_newlines_quotes_or_any_text_come_back_whole_in_database_order(db, now):
    # Given eligible subscriptions with odd ids among ordinary ones
    club = builders.club(db)
    ids = [builders.subscription(db, club, sub_id=i) for i in ODD_IDS]
    ids += [builders.subscription(db, club) for _ in range(4)]
    with db.connect() as conn:
        expected = conn.scalars(
            text("SELECT id FROM subscription WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids}
        ).all()
    # When the whole list is asked (the first page folds every write into the cache)
    # Then every id comes back whole, once, in the database's order
    assert get()[1] == expected
    # And pages read from the cache walk them all, each `after` taken from X-Next-After
    pages, after = [], None
    while True:
        _, page, headers = get({"limit": "3"} | ({"after": after} if after else {}))
        pages += page
        if "X-Next-After" not in headers:
            break
        assert unquote(headers["X-Next-After"]) == page[-1]
        after = unquote(headers["X-Next-After"])
    assert pages == expected
    # And so do pages read while writes are pending, those subscriptions computed live
    builders.subscription_status(db, expected[6], 1, datetime(2026, 1, 1))
    builders.subscription_status(db, expected[0], 1, datetime(2026, 1, 1))
    assert get({"limit": "50", "after": expected[0]})[1] == expected[1:]


def test_next_after_is_the_last_id_itself_for_ordinary_ids(db, now):
    # Given uuid ids
    club = builders.club(db)
    ids = sorted(builders.subscription(db, club) for _ in range(3))
    # When a full page is asked
    _, page, headers = get({"limit": "2"})
    # Then the header is the last id, unchanged
    assert headers["X-Next-After"] == page[-1] == ids[1]
