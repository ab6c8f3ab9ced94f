"""`python -m ops` on the real database: tables, JSON, confirmation and the audit."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from common import clock, settings
from domain import subscriptions
from domain.model import SubscriptionStatus
from ops.__main__ import main
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from scripts import billing_run
from tests import builders, platforms
from tests.integration.test_money_ops import FIRST_RUN, declined_members

NOW = datetime(2026, 11, 21, 12)


class Terminal(io.StringIO):
    """An operator's terminal: stdin that answers the confirmation."""

    def isatty(self) -> bool:
        return True


def ops(*argv: str, stdin: io.StringIO | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), stdin or io.StringIO(), out)
    return code, out.getvalue()


def audit_rows(db) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT action, actor, details FROM billing_audit ORDER BY id"))
        return [dict(r._mapping) for r in rows]


def test_clubs_lists_each_club_with_its_status_by_name(db, now):
    # Given an open club and one that closes next month
    open_club = builders.club(db, name="Hop Heads")
    closing = builders.club(db, name="Old Ales")
    builders.club_status(db, closing, 2, datetime(2026, 12, 1), NOW)
    # When an operator lists the clubs, as a table and as JSON
    code, table = ops("clubs")
    _, raw = ops("clubs", "--json")
    # Then both show the status now and the next change
    assert code == 0
    assert "Hop Heads" in table
    assert "FECHADO" in table
    rows = {r["club_id"]: r for r in json.loads(raw)}
    assert rows[open_club]["status"] == "ATIVO"
    assert (rows[closing]["next_status"], rows[closing]["next_change_at"]) == (
        "FECHADO",
        "2026-12-01 00:00:00",
    )


def test_closing_a_club_writes_a_history_row_and_audits_the_operator(db, now):
    # Given an open club
    club = builders.club(db)
    # When an operator closes it from 1 December, confirming at the terminal
    code, out = ops(
        "club",
        "close",
        str(club),
        "--at",
        "2026-12-01T00:00",
        "--as",
        "ana",
        stdin=Terminal("y\n"),
    )
    # Then a history row says so, the club is still open now, and the audit names her
    assert code == 0
    with db.connect() as conn:
        row = conn.execute(
            text(
                "SELECT club_status_id, effect_date, create_date, details FROM club_status_history"
                " WHERE club_id = :c ORDER BY effect_date DESC LIMIT 1"
            ),
            {"c": club},
        ).one()
    assert (row.club_status_id, row.effect_date, row.create_date) == (
        2,
        datetime(2026, 12, 1),
        NOW,
    )
    assert row.details == "closed to new members (by ana)"
    assert [(a["action"], a["actor"]) for a in audit_rows(db)] == [("club_status", "operator:ana")]
    assert "FECHADO" in out


def test_a_write_without_confirmation_changes_nothing(db, now):
    # Given an open club
    club = builders.club(db)
    # When the operator answers no, or runs it from a script without --yes
    declined, _ = ops("club", "deactivate", str(club), stdin=Terminal("n\n"))
    scripted, _ = ops("club", "deactivate", str(club))
    # Then both are refused and nothing was written
    assert (declined, scripted) == (1, 1)
    assert builders.count(db, "club_status_history", "club_id = :c", c=club) == 1
    assert audit_rows(db) == []


def test_creating_and_opening_a_club_with_yes(db, now):
    # When an operator creates a club and opens it, without a prompt
    code, raw = ops("club", "create", "Sour Hour", "--sku", "77", "--open", "--yes", "--json")
    # Then it exists, is open, and both writes are audited
    assert code == 0
    row = json.loads(raw)
    assert (row["club"], row["sku"], row["status"]) == ("Sour Hour", 77, "ATIVO")
    assert [a["action"] for a in audit_rows(db)] == ["club_created", "club_status"]


def test_an_unknown_club_is_a_clear_error(db, now):
    code, _ = ops("club", "open", "999999", "--yes")
    assert code == 2


def test_member_shows_the_subscription_and_its_timeline_by_customer_id(db, now):
    # Given a customer with a subscription and a scheduled pause
    club = builders.club(db)
    sub = builders.subscription(db, club, customer="cust-desk")
    builders.subscription_status(db, sub, 3, datetime(2026, 12, 10), NOW)
    # When support looks the customer up
    code, table = ops("member", "cust-desk")
    _, raw = ops("member", sub, "--json")
    # Then the subscription, its next change and its timeline are shown
    assert code == 0
    assert sub in table
    assert "status (scheduled)" in table
    (found,) = json.loads(raw)
    assert (found["status"], found["next_status"], found["eligible"]) == ("ATIVO", "PAUSADO", True)
    assert [row["kind"] for row in found["timeline"]] == ["status", "status (scheduled)"]
    assert ops("member", "nobody-at-all")[0] == 2


def test_forecast_prints_the_summary_per_club(db, now):
    # Given two members due on 1 December and one paused
    club = builders.club(db)
    for _ in range(2):
        builders.subscription(db, club)
    builders.subscription(db, club, status_id=3)
    # When the operator asks what the next run will do
    code, table = ops("forecast", "--at", "2026-12-01T06:00")
    _, raw = ops("forecast", "--at", "2026-12-01T06:00", "--json")
    # Then two new-period charges are forecast for the club, and the paused one excluded
    assert code == 0
    assert "the daily run at 2026-12-01 06:00 UTC" in table
    assert json.loads(raw)["summary"] == [
        {"club_id": club, "sku": 1234, "charge": 2, "excluded: its status is PAUSADO": 1}
    ]


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def test_charge_now_charges_the_period_once_under_the_runs_request_id(db, now, platform):
    # Given a member not yet charged this month
    club = builders.club(db)
    sub = builders.subscription(db, club)
    # When an operator charges the period now, twice
    first, raw = ops("charge", sub, "--yes", "--as", "bob", "--json")
    second, raw2 = ops("charge", sub, "--yes", "--as", "bob", "--json")
    # Then the platform got one order, the second was replayed, and bob is in the audit
    assert (first, second) == (0, 0)
    assert json.loads(raw)["state"] == "succeeded"
    assert json.loads(raw2)["replayed"] is True
    assert len(platform.orders) == 1
    actors = {a["actor"] for a in audit_rows(db)}
    assert actors == {"operator:bob"}


# --- the money path's desk actions (issue 12's domain): reconcile, release, waive, undo ---


def declined(db, now, platform, count: int) -> list[str]:
    """Members declined on 1 November and every day to the 5th: windows closed on the 6th."""
    return declined_members(db, now, platform, count)


def status_now(db, sub: str) -> int:
    return builders.history(db, sub)[-1][0]


def test_reconcile_settles_an_unknown_row_and_audits_the_operator(db, now, platform):
    # Given a charge whose outcome is unknown in the ledger, placed at the platform
    now(datetime(2026, 11, 10, 9))
    sub = builders.subscription(db, builders.club(db, sku=9))
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at, billing_date)"
                " VALUES (:s, '2026-11', 'rq-unknown', 'unknown', 1, :t, :t, :t, :b)"
            ),
            {"s": sub, "t": datetime(2026, 11, 10, 8), "b": datetime(2026, 11, 1)},
        )
    platform.create_order("rq-unknown", "x", 9)
    # When an operator runs it without confirming, then with --yes
    assert ops("reconcile")[0] == 1
    assert builders.count(db, "billing_audit", "action = 'operator_reconcile'") == 0
    code, raw = ops("reconcile", "--yes", "--as", "ana", "--json")
    # Then the row is settled as paid, and the run is audited with the operator's name
    assert code == 0
    assert [s["request_id"] for s in json.loads(raw)["settled"]] == ["rq-unknown"]
    assert builders.count(db, "charge", "state = 'succeeded' AND subscription_id = :s", s=sub) == 1
    assert (
        builders.count(
            db, "billing_audit", "action = 'operator_reconcile' AND actor = 'operator:ana'"
        )
        == 1
    )


def test_release_cancellations_lists_then_releases_what_the_breaker_held(
    db, now, platform, monkeypatch
):
    # Given 3 cancellations held by a breaker allowing 1
    subs = declined(db, now, platform, 3)
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    settings.get.cache_clear()
    now(FIRST_RUN + timedelta(days=6))
    billing_run.run(io.StringIO())
    assert sum(status_now(db, s) == 2 for s in subs) == 0
    # When an operator lists them, then releases them with --yes
    code, raw = ops("release-cancellations", "--list", "--json")
    assert sorted(r["subscription_id"] for r in json.loads(raw)) == sorted(subs)
    assert ops("release-cancellations")[0] == 1  # not confirmed: nothing released
    code, raw = ops("release-cancellations", "--yes", "--as", "ana", "--json")
    # Then each is carried out by the worker's rules and audited with the operator
    assert code == 0
    assert [r["outcome"] for r in json.loads(raw)] == ["cancelled"] * 3
    assert sum(status_now(db, s) == 2 for s in subs) == 3
    assert builders.count(db, "billing_audit", "actor = 'operator:ana'") == 3


def test_a_waived_period_is_closed_without_cancelling_anyone(db, now, platform):
    # Given a member declined on November's every day to the 5th
    (sub,) = declined(db, now, platform, 1)
    # When support waives November before the 6th's run (not confirmed first)
    now(FIRST_RUN + timedelta(days=5, hours=12))
    assert ops("waive", sub, "2026-11", "--reason", "goodwill")[0] == 1
    code, raw = ops(
        "waive", sub, "2026-11", "--reason", "goodwill", "--yes", "--as", "ana", "--json"
    )
    # Then the period is abandoned (waived), audited, and the next run cancels nobody
    assert code == 0
    assert json.loads(raw)["state"] == "abandoned"
    assert builders.count(db, "billing_audit", "action = 'waived' AND actor = 'operator:ana'") == 1
    now(FIRST_RUN + timedelta(days=6))
    billing_run.run(io.StringIO())
    assert status_now(db, sub) == 1
    # And a period that is not unpaid is refused, nothing written
    assert ops("waive", sub, "2026-11", "--reason", "again", "--yes")[0] == 2


def test_undo_cancellation_restores_a_member_billing_cancelled_and_only_such(db, now, platform):
    # Given a member billing cancelled on the 6th, and one who cancelled themselves
    (sub,) = declined(db, now, platform, 1)
    now(FIRST_RUN + timedelta(days=6))
    billing_run.run(io.StringIO())
    assert status_now(db, sub) == 2
    own = builders.subscription(db, builders.club(db))
    subscriptions.change_status(
        SqlAlchemyUnitOfWork(), own, SubscriptionStatus.CANCELLED, clock.now()
    )
    # When support undoes the billing cancellation
    now(FIRST_RUN + timedelta(days=7))
    code, _ = ops(
        "undo-cancellation", sub, "--reason", "paid by bank transfer", "--yes", "--as", "ana"
    )
    # Then the member is ACTIVE from now, audited with the operator's name
    assert code == 0
    assert status_now(db, sub) == 1
    assert (
        builders.count(
            db, "billing_audit", "action = 'cancellation_undone' AND actor = 'operator:ana'"
        )
        == 1
    )
    # And a member's own cancellation is not the desk's to undo
    assert ops("undo-cancellation", own, "--reason", "no", "--yes")[0] == 2
    assert status_now(db, own) == 2
