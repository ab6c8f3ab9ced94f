"""GET /clubs, GET /club/{id} and GET /subscription/{id}: the website's read API."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from handlers import club as club_handler
from handlers import clubs as clubs_handler
from handlers import status as status_handler
from handlers import subscribe as subscribe_handler
from handlers import subscription as subscription_handler
from repositories import status_absorber
from scripts import billing_run
from tests import builders, platforms
from tests.events import api_event, invoke

LONG_AGO = datetime(2020, 1, 1)


def get_clubs(**query):
    return invoke(clubs_handler.lambda_handler, api_event("GET", "/clubs", query=query or None))


def get_club(club_id):
    return invoke(club_handler.lambda_handler, api_event("GET", "/club/{id}", {"id": club_id}))


def get_subscription(sub_id):
    event = api_event("GET", "/subscription/{id}", {"id": sub_id})
    return invoke(subscription_handler.lambda_handler, event)


@pytest.fixture
def catalog(db, now):
    """An open club, a closed one, a retired one, one opening in a week, one never opened."""
    at = now.value()
    open_ = builders.club(db, 1, LONG_AGO, sku=1001, name="Hop Heads")
    closed = builders.club(db, 1, LONG_AGO, sku=1002, name="Old Ales")
    builders.club_status(db, closed, 2, at - timedelta(days=30))
    retired = builders.club(db, 3, LONG_AGO, sku=1003, name="Pilsner Pals")
    opening = builders.club(db, 1, at + timedelta(days=7), sku=1004, name="Sour Hour")
    never = builders.club(db, None, sku=1005, name="Someday")
    return {"open": open_, "closed": closed, "retired": retired, "opening": opening, "never": never}


def test_clubs_lists_the_clubs_a_visitor_may_join_now_with_name_and_sku(db, now, catalog):
    # Given clubs in every status
    # When the website lists the clubs without a filter
    status, body, _ = get_clubs()
    # Then only the open club comes back, with what the website shows
    assert status == 200
    assert [c["id"] for c in body] == [catalog["open"]]
    assert body[0] == {
        "id": catalog["open"],
        "name": "Hop Heads",
        "sku": 1001,
        "status": "ACTIVE",
        "status_id": 1,
        "since": LONG_AGO.isoformat(),
        "accepts_subscriptions": True,
        "opens_at": None,
        "next_change": None,
    }


def test_clubs_filters_by_status_and_lists_clubs_not_open_yet_with_their_opening(db, now, catalog):
    # Given clubs in every status
    # When each filter is asked for
    by_filter = {f: get_clubs(status=f) for f in ("CLOSED", "INACTIVE", "NONE", "ALL")}
    # Then each lists its clubs by id
    assert all(status == 200 for status, _, _ in by_filter.values())
    ids = {f: [c["id"] for c in body] for f, (_, body, _) in by_filter.items()}
    assert ids["CLOSED"] == [catalog["closed"]]
    assert ids["INACTIVE"] == [catalog["retired"]]
    assert ids["NONE"] == [catalog["opening"], catalog["never"]]
    assert ids["ALL"] == sorted(catalog.values())
    # And the club opening next week says when, the one never opened does not
    opening, never = by_filter["NONE"][1]
    opens = (now.value() + timedelta(days=7)).isoformat()
    assert (opening["status"], opening["accepts_subscriptions"]) == (None, False)
    assert opening["opens_at"] == opens
    assert opening["next_change"] == {"status": "ACTIVE", "status_id": 1, "effect_date": opens}
    assert (never["opens_at"], never["next_change"], never["since"]) == (None, None, None)


def test_clubs_refuses_an_unknown_filter(db, now):
    # When the filter is not a status, Then 400 in the envelope
    status, body, _ = get_clubs(status="OPEN")
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert "status" in body["error"]["message"]


def test_a_club_says_its_status_since_when_and_what_is_scheduled(db, now, catalog):
    # Given an open club that closes to new members in ten days and retires in a year
    at = now.value()
    club = catalog["open"]
    builders.club_status(db, club, 2, at + timedelta(days=10))
    builders.club_status(db, club, 3, at + timedelta(days=365))
    # When the website reads it
    status, body, _ = get_club(str(club))
    # Then it has its status by name, since when, the next change and every later one
    assert status == 200
    assert (body["status"], body["since"]) == ("ACTIVE", LONG_AGO.isoformat())
    assert body["accepts_subscriptions"] is True
    assert body["opens_at"] is None
    closes = {
        "status": "CLOSED",
        "status_id": 2,
        "effect_date": (at + timedelta(days=10)).isoformat(),
    }
    retires = {
        "status": "INACTIVE",
        "status_id": 3,
        "effect_date": (at + timedelta(days=365)).isoformat(),
    }
    assert body["next_change"] == closes
    assert body["scheduled_changes"] == [closes, retires]


def test_a_scheduled_instant_shows_the_row_the_rule_picks_then(db, now, catalog):
    # Given two rows for the same future instant, the later written one INACTIVE
    at = now.value()
    when = at + timedelta(days=3)
    builders.club_status(db, catalog["open"], 2, when, create_date=at - timedelta(days=2))
    builders.club_status(db, catalog["open"], 3, when, create_date=at - timedelta(days=1))
    # When the club is read, Then the change listed is the one that will count then
    _, body, _ = get_club(str(catalog["open"]))
    assert [c["status"] for c in body["scheduled_changes"]] == ["INACTIVE"]


def test_a_club_not_yet_open_says_when_it_opens_and_subscribing_to_it_too(db, now, catalog):
    # Given a club opening in a week
    opens = (now.value() + timedelta(days=7)).isoformat()
    # When it is read
    status, body, _ = get_club(str(catalog["opening"]))
    # Then it has no status yet and says when it opens
    assert status == 200
    assert (body["status"], body["since"], body["opens_at"]) == (None, None, opens)
    # And a subscription to it is refused with the same date, nothing written
    event = api_event(
        "POST", "/club/{id}/subscribe", {"id": str(catalog["opening"])}, body={"customer_id": "c1"}
    )
    status, body, _ = invoke(subscribe_handler.lambda_handler, event)
    assert status == 409
    assert body["error"]["code"] == "club_not_open"
    assert body["error"]["opens_at"] == opens
    assert opens in body["error"]["message"]
    assert builders.count(db, "subscription") == 0


def test_a_closed_club_refuses_subscriptions_without_an_opening_date(db, now, catalog):
    event = api_event(
        "POST", "/club/{id}/subscribe", {"id": str(catalog["closed"])}, body={"customer_id": "c1"}
    )
    status, body, _ = invoke(subscribe_handler.lambda_handler, event)
    assert (status, body["error"]["code"]) == (409, "club_not_open")
    assert "opens_at" not in body["error"]


@pytest.mark.parametrize(
    ("club_id", "expected"),
    [("999999", (404, "club_not_found")), ("abc", (400, "invalid_request"))],
)
def test_an_unknown_or_malformed_club_is_refused(db, now, club_id, expected):
    status, body, _ = get_club(club_id)
    assert (status, body["error"]["code"]) == expected


def test_a_subscription_shows_its_club_customer_status_and_scheduled_return(db, now, catalog):
    # Given a subscription paused from tomorrow for 30 days through the status endpoint
    at = now.value()
    sub = builders.subscription(db, catalog["open"], customer="cust-1")
    pause = (at + timedelta(days=1)).isoformat()
    event = api_event(
        "POST",
        "/subscription/{id}/status",
        {"id": sub},
        body={"status_id": 3, "effect_date": pause, "interval": 30, "details": "on holiday"},
    )
    assert invoke(status_handler.lambda_handler, event)[0] == 200
    # When the website reads it
    status, body, _ = get_subscription(sub)
    # Then it shows who, which club, the status now and what comes
    assert status == 200
    assert body["id"] == sub
    assert body["customer_id"] == "cust-1"
    assert body["club"] == {
        "id": catalog["open"],
        "name": "Hop Heads",
        "sku": 1001,
        "status": "ACTIVE",
        "status_id": 1,
    }
    assert (body["status"], body["status_id"], body["since"]) == ("ACTIVE", 1, LONG_AGO.isoformat())
    back = (at + timedelta(days=31)).isoformat()
    assert body["scheduled_changes"] == [
        {"status": "PAUSED", "status_id": 3, "effect_date": pause, "details": "on holiday"},
        {
            "status": "ACTIVE",
            "status_id": 1,
            "effect_date": back,
            "details": "Automatic return schedule",
        },
    ]
    # And its billing: the calendar month, not charged yet, nothing unpaid
    assert body["billing"] == {
        "schedule": {"interval": "monthly", "anniversary": False},
        "current_period": {
            "period": "2026-11",
            "billing_date": "2026-11-01T00:00:00",
            "charge": None,
        },
        "unpaid_periods": [],
    }


def test_a_subscription_follows_its_clubs_schedule(db, now, catalog):
    # Given a quarterly club
    builders.billing_schedule(db, catalog["open"], "quarterly")
    sub = builders.subscription(db, catalog["open"])
    # When read, Then its period is the quarter
    period = get_subscription(sub)[1]["billing"]["current_period"]
    assert (period["period"], period["billing_date"]) == ("2026-Q4", "2026-10-01T00:00:00")


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def test_an_unpaid_period_is_listed_until_its_retry_window_closes(db, now, catalog, platform):
    # Given a November charge the platform declined on the 1st
    now(datetime(2026, 11, 1, 6))
    sub = builders.subscription(db, catalog["open"])
    platform.set_mode("reject", times=1)
    assert billing_run.run(io.StringIO())["failed"] == 1
    # When read on the 5th, inside the five-day window
    now(datetime(2026, 11, 5, 23))
    billing = get_subscription(sub)[1]["billing"]
    # Then November is the current period, failed, and listed as unpaid until five days
    # after its first attempt (later than its billing date), as the billing run decides
    assert billing["current_period"]["charge"]["state"] == "failed"
    assert billing["current_period"]["charge"]["attempts"] == 1
    [unpaid] = billing["unpaid_periods"]
    assert (unpaid["period"], unpaid["state"]) == ("2026-11", "failed")
    assert unpaid["billing_date"] == "2026-11-01T00:00:00"
    assert unpaid["retry_until"] == "2026-11-06T06:00:00"
    # And once the window has closed (before any run cancelled it), it is no longer listed
    now(datetime(2026, 11, 6, 6))
    assert get_subscription(sub)[1]["billing"]["unpaid_periods"] == []


def test_a_charged_period_shows_as_succeeded_and_not_unpaid(db, now, catalog, platform):
    # Given a subscription the billing run charged
    sub = builders.subscription(db, catalog["open"])
    assert billing_run.run(io.StringIO())["charged"] == 1
    # When read, Then its current period is succeeded and nothing is unpaid
    billing = get_subscription(sub)[1]["billing"]
    assert billing["current_period"]["charge"]["state"] == "succeeded"
    assert billing["unpaid_periods"] == []


def test_an_earlier_unpaid_period_inside_its_window_is_listed_beside_the_current_one(
    db, now, catalog, platform
):
    # Given a member declined on 29 November, read on 1 December (November's window open)
    now(datetime(2026, 11, 29, 6))
    sub = builders.subscription(db, catalog["open"])
    platform.set_mode("reject", times=1)
    assert billing_run.run(io.StringIO())["failed"] == 1
    now(datetime(2026, 12, 1, 1))
    billing = get_subscription(sub)[1]["billing"]
    # Then December is the current period, not charged yet, and November is unpaid
    assert billing["current_period"] == {
        "period": "2026-12",
        "billing_date": "2026-12-01T00:00:00",
        "charge": None,
    }
    assert [(u["period"], u["retry_until"]) for u in billing["unpaid_periods"]] == [
        ("2026-11", "2026-12-04T06:00:00")
    ]


def test_a_subscription_written_by_sql_without_club_customer_or_history_reads(db, now):
    # Given a row an operator inserted with NULLs and no history
    with db.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("INSERT INTO subscription (id) VALUES ('sql-only')"))
    # When read, Then it answers with nulls rather than failing
    status, body, _ = get_subscription("sql-only")
    assert status == 200
    assert (body["club"], body["customer_id"], body["status"], body["since"]) == (
        None,
        None,
        None,
        None,
    )
    assert body["billing"]["current_period"]["period"] == "2026-11"


@pytest.mark.parametrize(
    ("sub_id", "expected"),
    [("no-such-subscription", (404, "subscription_not_found")), ("a\tb", (400, "invalid_request"))],
)
def test_an_unknown_or_malformed_subscription_is_refused(db, now, sub_id, expected):
    status, body, _ = get_subscription(sub_id)
    assert (status, body["error"]["code"]) == expected


def test_the_club_list_built_by_the_database_matches_each_club_read_alone(db, now, catalog):
    # Given clubs in every status, one with a scheduled change at an instant with
    # microseconds and one without a name or SKU
    builders.club_status(db, catalog["open"], 2, now.value() + timedelta(microseconds=120_500))
    odd = builders.club(db, 2, LONG_AGO, sku=None)
    with db.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE club SET name = NULL WHERE id = :i"), {"i": odd})
    # When every club is listed and each is read alone
    status, listed, _ = get_clubs(status="ALL")
    # Then each listed club is exactly what GET /club/{id} says, without the schedule
    assert status == 200
    assert [c["id"] for c in listed] == sorted([*catalog.values(), odd])
    for club in listed:
        alone = get_club(str(club["id"]))[1]
        del alone["scheduled_changes"]
        assert club == alone
    assert listed[0]["next_change"]["effect_date"] == "2026-11-21T12:00:00.120500"
    assert (listed[-1]["name"], listed[-1]["sku"], listed[-1]["status"]) == (None, None, "CLOSED")


def test_a_subscriptions_status_follows_the_rule_on_ties_and_null_create_dates(db, now, catalog):
    # Given two rows at the same instant: one written later (PAUSED), one with a NULL
    # create_date (ACTIVE, which the rule ranks lowest)
    at = now.value()
    sub = builders.subscription(db, catalog["open"])
    when = at - timedelta(days=1)
    builders.subscription_status(db, sub, 1, when, create_date=None, row_id="zzz-null")
    builders.subscription_status(db, sub, 3, when, create_date=at - timedelta(days=2))
    # When read, Then the status is the rule's answer
    from tests.integration.test_status import current_status

    body = get_subscription(sub)[1]
    assert body["status_id"] == current_status(db, sub, at) == 3
    assert body["since"] == when.isoformat()


def test_a_declined_periods_window_opens_at_its_first_decline_as_billing_decides(
    db, now, catalog, platform
):
    # Given November's first attempt failed at the platform (a 5xx) on the 1st, and the
    # card was declined only on the 3rd
    now(datetime(2026, 11, 1, 6))
    sub = builders.subscription(db, catalog["open"])
    platform.set_mode("fail", times=1)
    billing_run.run(io.StringIO())
    now(datetime(2026, 11, 3, 6))
    platform.set_mode("reject", times=1)
    billing_run.run(io.StringIO())
    # When read on the 7th (past five days from the first attempt, inside five from the
    # decline), Then November is unpaid until five days after the decline
    now(datetime(2026, 11, 7, 12))
    [unpaid] = get_subscription(sub)[1]["billing"]["unpaid_periods"]
    assert (unpaid["period"], unpaid["state"]) == ("2026-11", "failed")
    assert unpaid["retry_until"] == "2026-11-08T06:00:00"


def test_a_period_failing_on_the_platforms_side_is_retried_until_it_ends(
    db, now, catalog, platform
):
    # Given November's attempt failed at the platform (not a decline)
    now(datetime(2026, 11, 1, 6))
    sub = builders.subscription(db, catalog["open"])
    platform.set_mode("fail", times=1)
    billing_run.run(io.StringIO())
    # When read on the 20th, Then it is unpaid until November ends (no window: it never
    # counts towards cancellation)
    now(datetime(2026, 11, 20))
    [unpaid] = get_subscription(sub)[1]["billing"]["unpaid_periods"]
    assert unpaid["period"] == "2026-11"
    assert unpaid["state"] in ("unknown", "error")
    assert unpaid["retry_until"] == "2026-12-01T00:00:00"
    # And in December it is no longer retried, so no longer listed
    now(datetime(2026, 12, 1, 1))
    assert get_subscription(sub)[1]["billing"]["unpaid_periods"] == []


def test_a_schedule_changed_mid_period_shows_the_period_billing_will_charge(db, now, catalog):
    # Given a monthly club made quarterly on 15 November (the month already began)
    sub = builders.subscription(db, catalog["open"])
    builders.billing_schedule(db, catalog["open"], "quarterly", changed_at=datetime(2026, 11, 15))
    # When read on the 20th, Then November is still a monthly period (the change waits
    # for a boundary), and the first quarter billed is January's
    now(datetime(2026, 11, 20))
    period = get_subscription(sub)[1]["billing"]["current_period"]
    assert (period["period"], period["billing_date"]) == ("2026-11", "2026-11-01T00:00:00")
    now(datetime(2026, 12, 10))
    period = get_subscription(sub)[1]["billing"]["current_period"]
    assert (period["period"], period["billing_date"]) == ("2026-12", "2026-12-01T00:00:00")
    now(datetime(2027, 1, 10))
    period = get_subscription(sub)[1]["billing"]["current_period"]
    assert (period["period"], period["billing_date"]) == ("2027-Q1", "2027-01-01T00:00:00")


def fresh_clubs(**query):
    """The list as a container that never read it computes it."""
    from repositories import views

    views._CLUBS_READ.clear()
    return get_clubs(**query)[1]


CLUB_LIST_CHANGES = [
    "a club status written",
    "a club renamed",
    "a club change falls due",
    "asked before the list was read",
    "a write in flight while the list was read",
    "the writes pruned after one in flight",
]


@pytest.mark.parametrize("change", CLUB_LIST_CHANGES)
def test_the_club_list_is_read_again_only_once_the_clubs_changed(
    db, now, catalog, statements, monkeypatch, change
):
    # Given a list read once (a write to the clubs in flight meanwhile, for two cases)
    at = now.value()
    held = db.connect()
    if "in flight" in change:
        held.begin()
        builders.club_status(held, catalog["open"], 3, at - timedelta(minutes=1))
    try:
        first = get_clubs(status="ALL")[1]
    finally:
        if held.in_transaction():
            held.commit()
        held.close()
    # When nothing changed, the list is served again after one probe
    if "in flight" not in change:
        assert first == fresh_clubs(status="ALL")
        statements.clear()
        assert get_clubs(status="ALL")[1] == first
        assert statements == ["SELECT (SELECT oid FROM"], statements
    # When the clubs change, or the instant asked leaves what the reading was about
    if change == "a club status written":
        builders.club_status(db, catalog["open"], 3, at - timedelta(minutes=1))
    elif change == "a club renamed":
        with db.begin() as conn:
            conn.execute(
                text("UPDATE club SET name = 'Hop Heads II' WHERE id = :c"), {"c": catalog["open"]}
            )
    elif change == "a club change falls due":
        now(at + timedelta(days=8))
    elif change == "asked before the list was read":
        now(at - timedelta(days=60))
    elif change == "the writes pruned after one in flight":
        monkeypatch.setattr(status_absorber, "CLUB_WRITES_KEPT", 0)
        absorber = status_absorber.Absorber(db)
        steps = [absorber.step()[0] for _ in range(4)]
        assert "idle" in steps, steps
        assert builders.count(db, "club_write") == 1
    # Then the next list is the one computed afresh, and differs from the first
    answer = get_clubs(status="ALL")[1]
    assert answer == fresh_clubs(status="ALL")
    assert answer != first
