"""Retries for five days after the billing date, then cancellation through the history."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from common import settings
from domain import billing
from scripts import billing_run
from tests import builders, platforms
from tests.integration.test_charge import ledger

FIRST_RUN = datetime(2026, 11, 1, 6)


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


@pytest.fixture
def member(db, now):
    now(FIRST_RUN)
    return builders.subscription(db, builders.club(db))


def run_on(now, day: datetime):
    now(day)
    return billing_run.run(io.StringIO())


def test_a_declined_charge_is_retried_by_a_later_run_with_a_new_request_id(
    db, now, member, platform
):
    # Given a first run whose payment the platform declined
    platform.set_mode("reject", times=1)
    assert run_on(now, FIRST_RUN)["failed"] == 1
    # When the next day's run comes
    counts = run_on(now, FIRST_RUN + timedelta(days=1))
    # Then it charged the period, under the retry's own deterministic request id
    assert counts["charged"] == 1
    row = ledger(db, member)
    assert (row["state"], row["attempts"]) == ("succeeded", 2)
    assert row["request_id"] == billing.request_id_for(member, "2026-11", 1)
    assert [o["request_id"] for o in platform.orders] == [row["request_id"]]


def test_when_the_window_closes_without_success_the_subscription_is_cancelled(
    db, now, member, platform
):
    # Given a member with a pause scheduled for December, declined at every run
    builders.subscription_status(db, member, 3, datetime(2026, 12, 10), FIRST_RUN)
    platform.set_mode("reject")
    for day in range(5):
        assert run_on(now, FIRST_RUN + timedelta(days=day))["failed"] == 1
    # When the run comes after five days without success
    counts = run_on(now, FIRST_RUN + timedelta(days=5, minutes=1))
    # Then the subscription was cancelled, saying why, and the scheduled pause superseded
    assert counts["cancelled"] == 1
    status, effect, details = builders.history(db, member)[-1]
    assert (status, effect) == (2, FIRST_RUN + timedelta(days=5, minutes=1))
    assert details == (
        "Cancelled by billing: no successful charge for 2026-11 within 5 days "
        "(last answer: HTTP 422)"
    )
    assert builders.count(db, "superseded_status_change", "subscription_id = :s", s=member) == 1
    # And the ledger records the final failure, and no call was made after the window
    row = ledger(db, member)
    assert (row["state"], row["attempts"]) == ("abandoned", 5)
    assert platform.calls == 5
    # And the audit says the billing run did it
    actions = [(a["action"], a["actor"]) for a in builders.audit(db, member)]
    assert actions[-2:] == [("abandoned", "billing-run"), ("cancellation", "billing-run")]
    # And later runs leave it alone
    assert run_on(now, FIRST_RUN + timedelta(days=6))["cancelled"] == 0


def test_the_retry_window_is_configurable(db, now, member, platform, monkeypatch):
    # Given a two-day retry window and a platform declining every payment
    monkeypatch.setenv("BILLING_RETRY_DAYS", "2")
    settings.get.cache_clear()
    platform.set_mode("reject")
    run_on(now, FIRST_RUN)
    # When runs come one and then two days later
    one_day = run_on(now, FIRST_RUN + timedelta(days=1))
    two_days = run_on(now, FIRST_RUN + timedelta(days=2))
    # Then the first still retried and the second cancelled
    assert (one_day["failed"], two_days["cancelled"]) == (1, 1)
    assert "within 2 days" in builders.history(db, member)[-1][2]


def test_an_unknown_outcome_is_retried_with_the_same_request_id(db, now, member, platform):
    # Given a first run whose call failed at the platform (5xx): outcome unknown
    platform.set_mode("fail", times=1)
    assert run_on(now, FIRST_RUN)["failed"] == 1
    first_id = ledger(db, member)["request_id"]
    # When the next run retries
    assert run_on(now, FIRST_RUN + timedelta(days=1))["charged"] == 1
    # Then it reused the request id, so the platform could deduplicate
    assert ledger(db, member)["request_id"] == first_id == billing.request_id_for(member, "2026-11")


def test_a_member_who_joined_late_in_the_period_gets_the_whole_window(db, now, member, platform):
    # Given a member first charged on 20 November (billing date 1 November), declined
    platform.set_mode("reject", times=1)
    assert run_on(now, datetime(2026, 11, 20, 6))["failed"] == 1
    # When the next day's run comes, Then it retries instead of cancelling
    assert run_on(now, datetime(2026, 11, 21, 6))["charged"] == 1


def test_a_failed_period_left_behind_by_missed_runs_still_ends_the_subscription(
    db, now, member, platform
):
    # Given a November charge declined on the 1st, and no run again until December
    platform.set_mode("reject", times=1)
    assert run_on(now, FIRST_RUN)["failed"] == 1
    # When December's first run comes, long after November's window closed
    counts = run_on(now, datetime(2026, 12, 1, 6))
    # Then the subscription is cancelled for November instead of charged for December
    assert counts["cancelled"] == 1
    assert platform.calls == 1
    status, _, details = builders.history(db, member)[-1]
    assert status == 2
    assert details.startswith("Cancelled by billing: no successful charge for 2026-11 within")
    assert ledger(db, member)["state"] == "abandoned"
    assert builders.count(db, "charge", "subscription_id = :s", s=member) == 1


def test_a_failed_period_still_inside_its_window_does_not_stop_the_next_one(
    db, now, member, platform
):
    # Given a member who joined on 29 November and was declined that day
    platform.set_mode("reject", times=1)
    assert run_on(now, datetime(2026, 11, 29, 6))["failed"] == 1
    # When December's first run comes two days later (November's window still open)
    counts = run_on(now, datetime(2026, 12, 1, 6))
    # Then November is retried inside its own window and December is charged too,
    # and the subscription stays
    assert counts["charged"] == 2
    assert builders.history(db, member)[-1][0] == 1


def test_the_charge_endpoint_refuses_an_abandoned_period(db, now, member, platform):
    # Given a period the billing run abandoned
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at)"
                " VALUES (:s, '2026-11', 'r', 'abandoned', 5, :n, :n, :n)"
            ),
            {"s": member, "n": FIRST_RUN},
        )
    # When the charge endpoint is called for it
    from tests.integration.test_billing_schedule import post

    status, body, _ = post(member, "manual")
    # Then it answers 409 and calls nobody
    assert (status, body["error"]["code"]) == (409, "charge_abandoned")
    assert platform.calls == 0
