"""The operators' views against the current-status rule, at many instants."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from domain import schedules
from repositories.status_rule import current_club_status, current_subscription_status
from tests import builders

T0 = datetime(2026, 11, 1, 12)


def view_at(db, sql: str, at: datetime, **params) -> list[dict]:
    with db.begin() as conn:
        conn.execute(text("SELECT set_config('ops.at', :at, true)"), {"at": at.isoformat()})
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def rule_at(db, at: datetime, club: bool = False) -> dict:
    stmt = current_club_status(at) if club else current_subscription_status(at)
    with db.connect() as conn:
        return {row.entity_id: row.status_id for row in conn.execute(stmt)}


def instants() -> list[datetime]:
    # Every row date below, a microsecond either side, and hours in between.
    found = {T0 + timedelta(hours=h) for h in range(-30, 80, 7)}
    for base in (T0, T0 + timedelta(days=1), T0 + timedelta(days=2)):
        found |= {base, base - timedelta(microseconds=1), base + timedelta(microseconds=1)}
    return sorted(found)


@pytest.fixture
def messy_history(db):
    """Subscriptions and clubs with ties, NULL dates and future rows, as SQL may write."""
    club = builders.club(db, status_id=None)
    day1, day2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    builders.club_status(db, club, 1, T0)
    builders.club_status(db, club, 2, day1, T0)
    builders.club_status(db, club, 3, day1, T0 + timedelta(hours=1))  # tie: later create wins
    builders.club_status(db, club, 1, None, T0)  # no date: never counts
    other = builders.club(db, status_id=None)
    builders.club_status(db, other, 1, day2)  # only in the future
    subs = []
    rng = random.Random(16)
    for n in range(12):
        sub = builders.subscription(db, club if n % 3 else other, status_id=None)
        subs.append(sub)
        for _ in range(rng.randint(0, 4)):
            effect = rng.choice([None, T0, day1, day2, T0 - timedelta(days=3)])
            create = rng.choice([None, T0, T0 - timedelta(hours=2)])
            builders.subscription_status(db, sub, rng.choice([1, 2, 3]), effect, create)
    # A tie on effect and create date: the greatest id wins.
    tied = builders.subscription(db, club, status_id=None)
    builders.subscription_status(db, tied, 1, T0, T0, row_id="aaaa")
    builders.subscription_status(db, tied, 2, T0, T0, row_id="bbbb")
    subs.append(tied)
    # Same effect date: the greatest create_date wins, a NULL one loses.
    by_create = builders.subscription(db, club, status_id=None)
    builders.subscription_status(db, by_create, 3, day1, None, row_id="zzzz")
    builders.subscription_status(db, by_create, 1, day1, T0, row_id="0000")
    builders.subscription_status(db, by_create, 2, day1, T0 - timedelta(hours=1), row_id="yyyy")
    subs.append(by_create)
    return club, other, subs


def test_subscription_now_gives_the_rules_status_at_every_instant(db, messy_history):
    # Given subscriptions with ties, NULL dates and future rows
    _, _, subs = messy_history
    for at in instants():
        # When the view is read at the instant
        rows = view_at(db, "SELECT subscription_id, status_id FROM subscription_now", at)
        # Then each status is the rule's (no status where the rule has none)
        expected = rule_at(db, at)
        assert {r["subscription_id"]: r["status_id"] for r in rows} == {
            s: expected.get(s) for s in subs
        }, at


def test_club_now_gives_the_rules_status_and_the_next_change(db, messy_history):
    # Given clubs with a tie, a NULL date and a club that opens only in the future
    club, other, _ = messy_history
    for at in instants():
        rows = view_at(db, "SELECT * FROM club_now", at)
        expected = rule_at(db, at, club=True)
        assert {r["club_id"]: r["status_id"] for r in rows} == {
            club: expected.get(club),
            other: expected.get(other),
        }, at
    # Then before day 1 the next change is the tie's winner (INACTIVE), by name
    row = view_at(db, "SELECT * FROM club_now WHERE club_id = :c", T0, c=club)[0]
    assert (row["status"], row["next_status"]) == ("ATIVO", "INATIVO")
    assert row["next_change_at"] == T0 + timedelta(days=1)
    assert (
        view_at(db, "SELECT * FROM club_now WHERE club_id = :c", T0, c=other)[0]["status"] is None
    )


def test_eligibility_and_why_not_follow_the_charge_rules(db):
    # Given an active member, a paused one, one of an inactive club, one without customer
    club = builders.club(db)
    inactive = builders.club(db, status_id=3)
    active = builders.subscription(db, club)
    paused = builders.subscription(db, club, status_id=3)
    retired = builders.subscription(db, inactive)
    nobody = builders.subscription(db, club)
    with db.begin() as conn:
        conn.execute(
            text("UPDATE subscription SET customer_store_id = '' WHERE id = :i"), {"i": nobody}
        )
    # When the view is read
    rows = {r["subscription_id"]: r for r in view_at(db, "SELECT * FROM subscription_now", T0)}
    # Then each says whether it is eligible and, if not, why
    assert rows[active]["eligible"] is True
    assert rows[active]["not_eligible_because"] is None
    assert rows[paused]["eligible"] is False
    assert rows[paused]["not_eligible_because"] == "its status is PAUSADO"
    assert rows[retired]["not_eligible_because"] == "its club is INATIVO"
    assert rows[nobody]["not_eligible_because"] == "it has no customer id"


@pytest.mark.parametrize("interval", ["monthly", "quarterly", "annual"])
@pytest.mark.parametrize("anniversary", [False, True])
def test_the_current_period_is_the_one_domain_schedules_gives(db, interval, anniversary):
    # Given members who started on awkward days (31st, 29 February, NULL)
    starts = [datetime(2024, 1, 31), datetime(2024, 2, 29), datetime(2025, 11, 30, 23), None]
    checks = [datetime(2025, 12, 27, 6) + timedelta(days=k) for k in range(0, 430, 2)]
    with db.connect() as conn:
        for start in starts:
            for at in checks:
                # When SQL computes the period
                key = conn.scalar(
                    text("SELECT billing_period_key(:i, :a, :s, :at)"),
                    {"i": interval, "a": anniversary, "s": start, "at": at},
                )
                # Then it is the domain's
                schedule = schedules.Schedule(schedules.Interval(interval), anniversary)
                assert key == schedules.period_for(schedule, at, start).key, (start, at)


def test_unpaid_periods_show_their_ledger_state_until_the_window_closes(db):
    # Given a member whose November charge failed on the 1st
    club = builders.club(db)
    sub = builders.subscription(db, club)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at, billing_date, failure_reason)"
                " VALUES (:s, '2026-11', 'r1', 'failed', 2, :t, :t, :t, :b, 'declined')"
            ),
            {"s": sub, "t": datetime(2026, 11, 1, 6), "b": datetime(2026, 11, 1)},
        )
    sql = "SELECT unpaid_periods FROM subscription_now WHERE subscription_id = :s"
    # When the view is read inside the window, then after it
    inside = view_at(db, sql, datetime(2026, 11, 6, 5), s=sub)[0]["unpaid_periods"]
    after = view_at(db, sql, datetime(2026, 11, 6, 7), s=sub)[0]["unpaid_periods"]
    # Then the period is listed with its state and when its window closes, then no more
    assert inside == [
        {
            "period": "2026-11",
            "state": "failed",
            "attempts": 2,
            "failure_reason": "declined",
            # A row written by plain SQL without declined_at: its window opens when created
            "declined_at": None,
            "window_closes_at": "2026-11-06T06:00:00",
        }
    ]
    assert after == []


def test_the_window_opens_at_the_first_decline_and_platform_failures_have_none(db):
    # Given December first attempted on the 1st (a platform failure), declined on the 3rd,
    # and an October the platform failed on (state error: no window, retried until its
    # period ends or abandoned by the run)
    club = builders.club(db)
    sub = builders.subscription(db, club)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at, billing_date, failure_reason,"
                " declined_at) VALUES"
                " (:s, '2026-12', 'r-dec', 'failed', 3, :t, :d, :d, :b, 'declined', :d),"
                " (:s, '2026-10', 'r-oct', 'error', 1, :o, :o, :o, :o, 'HTTP 401', NULL)"
            ),
            {
                "s": sub,
                "t": datetime(2026, 12, 1, 6),
                "d": datetime(2026, 12, 3, 6),
                "b": datetime(2026, 12, 1),
                "o": datetime(2026, 10, 1, 6),
            },
        )
    sql = "SELECT unpaid_periods FROM subscription_now WHERE subscription_id = :s"
    # When the view is read on the 7th (past 1 Dec + 5 days, inside 3 Dec + 5 days)
    unpaid = view_at(db, sql, datetime(2026, 12, 7, 6), s=sub)[0]["unpaid_periods"]
    # Then December is listed with the window of its first decline, October with none
    assert [(p["period"], p["state"], p["window_closes_at"]) for p in unpaid] == [
        ("2026-10", "error", None),
        ("2026-12", "failed", "2026-12-08T06:00:00"),
    ]
    # And on the 8th at 06:00 December's window has closed
    later = view_at(db, sql, datetime(2026, 12, 8, 6), s=sub)[0]["unpaid_periods"]
    assert [p["period"] for p in later] == ["2026-10"]


def test_member_timeline_holds_history_supersessions_charges_webhooks_and_audit(db):
    # Given a member with a scheduled change, a charge, its attempt, a webhook and audit
    club = builders.club(db)
    sub = builders.subscription(db, club, customer="cust-timeline")
    builders.subscription_status(db, sub, 3, T0 + timedelta(days=9), T0)
    builders.subscription_status(db, sub, 1, None, T0)
    with db.begin() as conn:
        charge_id = conn.scalar(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at) VALUES"
                " (:s, '2026-11', 'req-t', 'succeeded', 1, :t, :t, :t) RETURNING id"
            ),
            {"s": sub, "t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at,"
                " outcome) VALUES (:c, 1, 'req-t', :t, 'succeeded')"
            ),
            {"c": charge_id, "t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO webhook_event (event_id, type, request_id, payload, state,"
                " received_at) VALUES ('evt-t', 'payment-outcome', 'req-t',"
                ' \'{"data": {"outcome": "success"}}\', \'applied\', :t)'
            ),
            {"t": T0 + timedelta(minutes=5)},
        )
        conn.execute(
            text(
                "INSERT INTO superseded_status_change (history_id, subscription_id, status_id,"
                " effect_date, superseded_at, reason) VALUES ('h-x', :s, 2, :e, :t, 'gone')"
            ),
            {"s": sub, "e": T0 + timedelta(days=20), "t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO billing_audit (occurred_at, action, actor, subscription_id)"
                " VALUES (:t, 'charge_outcome', 'billing-run', :s)"
            ),
            {"s": sub, "t": T0 + timedelta(seconds=1)},
        )
    # When the timeline is read
    rows = view_at(
        db,
        "SELECT kind, what FROM member_timeline WHERE subscription_id = :s"
        " ORDER BY at NULLS LAST, recorded_at NULLS LAST, kind_order, ref",
        T0,
        s=sub,
    )
    # Then everything is there, in time order, and future and undated rows say so
    assert rows == [
        {"kind": "status", "what": "ATIVO"},
        {"kind": "charge", "what": "succeeded"},
        {"kind": "charge attempt", "what": "succeeded"},
        {"kind": "audit charge_outcome", "what": "billing-run"},
        {"kind": "webhook payment-outcome", "what": "applied"},
        {"kind": "status (scheduled)", "what": "PAUSADO"},
        {"kind": "superseded change", "what": "CANCELADO"},
        {"kind": "status (no date: never counts)", "what": "ATIVO"},
    ]


def test_the_views_accept_whatever_sql_writes_and_block_no_delete(db):
    # Given a subscription with history and a charge, and the views over them
    club = builders.club(db)
    sub = builders.subscription(db, club)
    view_at(db, "SELECT * FROM subscription_now", T0)
    # When an operator deletes the subscription and its history with plain SQL
    with db.begin() as conn:
        conn.execute(
            text("DELETE FROM subscription_status_history WHERE subscription_id = :s"), {"s": sub}
        )
        conn.execute(text("DELETE FROM subscription WHERE id = :s"), {"s": sub})
    # Then nothing blocked it and the view forgets it
    assert view_at(db, "SELECT * FROM subscription_now", T0) == []
    assert select  # the rule module is the reference used above
