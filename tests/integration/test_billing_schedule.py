"""The charge endpoint's idempotency follows the club's billing schedule."""

from __future__ import annotations

from datetime import datetime

import pytest

from handlers import charge as charge_handler
from tests import builders, platforms
from tests.events import api_event, invoke


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def post(sub_id: str, request_id: str):
    event = api_event(
        "POST",
        "/subscription/{id}/charge/{request_id}",
        {"id": sub_id, "request_id": request_id},
    )
    return invoke(charge_handler.lambda_handler, event)


def test_a_club_without_schedule_is_billed_by_calendar_month_as_before(db, now, platform):
    # Given a member of a club without a schedule row
    sub = builders.subscription(db, builders.club(db))
    # When charged in November and again in December
    now(datetime(2026, 11, 21))
    post(sub, "nov")
    now(datetime(2026, 12, 2))
    status, _, _ = post(sub, "dec")
    # Then both months were charged, keyed by calendar month
    assert status == 201
    assert len(platform.orders) == 2
    assert builders.count(db, "charge", "subscription_id = :s", s=sub) == 2


def test_a_quarterly_club_is_charged_once_per_quarter(db, now, platform):
    # Given a member of a quarterly club, charged in October
    club = builders.club(db)
    builders.billing_schedule(db, club, "quarterly")
    sub = builders.subscription(db, club)
    now(datetime(2026, 10, 3))
    post(sub, "october")
    # When charged again in November (same quarter) with another request id
    now(datetime(2026, 11, 21))
    status, body, _ = post(sub, "november")
    # Then the quarter's charge is replayed, without a second order
    assert status == 200
    assert (body["period"], body["replayed"], body["request_id"]) == ("2026-Q4", True, "october")
    assert len(platform.orders) == 1
    # And January opens the next quarter
    now(datetime(2027, 1, 1, 0, 5))
    assert post(sub, "january")[0] == 201
    assert ledger_periods(db, sub) == ["2026-Q4", "2027-Q1"]


def test_an_anniversary_club_bills_each_member_on_the_day_it_started(db, now, platform):
    # Given a monthly anniversary club and a member who started on 31 October
    club = builders.club(db)
    builders.billing_schedule(db, club, "monthly", anniversary=True)
    sub = builders.subscription(db, club)
    builders.subscription_started(db, sub, datetime(2026, 10, 31, 9))
    # When charged on 29 November, then on 30 November
    now(datetime(2026, 11, 29))
    post(sub, "a")
    now(datetime(2026, 11, 30, 8))
    post(sub, "b")
    # Then the first charge was the October cycle and the second the 30 November cycle
    assert ledger_periods(db, sub) == ["2026-10-31", "2026-11-30"]
    assert len(platform.orders) == 2
    # And the ledger keeps each cycle's billing date, from which retries count
    row = ledger_row(db, sub, "2026-11-30")
    assert row["billing_date"] == datetime(2026, 11, 30)


def test_an_annual_club_replays_the_year_charge(db, now, platform):
    # Given a member of an annual club charged in March
    club = builders.club(db)
    builders.billing_schedule(db, club, "annual")
    sub = builders.subscription(db, club)
    now(datetime(2026, 3, 1))
    post(sub, "year")
    # When charged again in November
    now(datetime(2026, 11, 21))
    status, body, _ = post(sub, "again")
    # Then it is the same year's charge
    assert (status, body["period"]) == (200, "2026")
    assert len(platform.orders) == 1


def ledger_periods(db, sub: str) -> list[str]:
    with db.connect() as conn:
        return list(
            conn.exec_driver_sql(
                "SELECT period FROM charge WHERE subscription_id = %s ORDER BY period", (sub,)
            ).scalars()
        )


def ledger_row(db, sub: str, period: str) -> dict:
    with db.connect() as conn:
        return dict(
            conn.exec_driver_sql(
                "SELECT * FROM charge WHERE subscription_id = %s AND period = %s", (sub, period)
            )
            .mappings()
            .one()
        )
