"""Billing schedules: period keys and billing dates at month ends, leap years, the 31st."""

from __future__ import annotations

from datetime import datetime

import pytest

from domain import schedules
from domain.schedules import Interval, Schedule, period_for

MONTHLY = Schedule()
QUARTERLY = Schedule(Interval.QUARTERLY)
ANNUAL = Schedule(Interval.ANNUAL)


@pytest.mark.parametrize(
    ("schedule", "now", "key", "billing_date"),
    [
        (MONTHLY, datetime(2026, 11, 21, 12), "2026-11", datetime(2026, 11, 1)),
        (MONTHLY, datetime(2026, 12, 31, 23, 59), "2026-12", datetime(2026, 12, 1)),
        (QUARTERLY, datetime(2026, 11, 21), "2026-Q4", datetime(2026, 10, 1)),
        (QUARTERLY, datetime(2026, 3, 31, 23), "2026-Q1", datetime(2026, 1, 1)),
        (QUARTERLY, datetime(2026, 4, 1), "2026-Q2", datetime(2026, 4, 1)),
        (ANNUAL, datetime(2026, 11, 21), "2026", datetime(2026, 1, 1)),
    ],
)
def test_calendar_schedules_key_periods_by_month_quarter_and_year(schedule, now, key, billing_date):
    # Given a calendar schedule, When asking for the period at `now`, Then key and date follow
    assert period_for(schedule, now, datetime(2020, 5, 17)) == schedules.Period(key, billing_date)


@pytest.mark.parametrize(
    ("now", "key"),
    [
        (datetime(2026, 1, 31, 8), "2026-01-31"),
        (datetime(2026, 2, 27), "2026-01-31"),
        (datetime(2026, 2, 28), "2026-02-28"),
        (datetime(2026, 3, 30), "2026-02-28"),
        (datetime(2026, 3, 31), "2026-03-31"),
        (datetime(2026, 4, 30), "2026-04-30"),
        (datetime(2028, 2, 29), "2028-02-29"),
        (datetime(2028, 2, 28), "2028-01-31"),
    ],
)
def test_anniversary_billing_on_the_31st_falls_on_the_last_day_of_shorter_months(now, key):
    # Given a monthly anniversary schedule and a subscription started on 31 October 2025
    schedule = Schedule(anniversary=True)
    # When asking for its period, Then the cycle began on its billing date (clamped)
    period = period_for(schedule, now, datetime(2025, 10, 31, 15, 30))
    assert period.key == key
    assert period.billing_date == datetime.fromisoformat(key)


def test_an_annual_anniversary_started_on_29_february_is_billed_on_28_february_otherwise():
    # Given an annual anniversary schedule started on a leap day
    schedule = Schedule(Interval.ANNUAL, anniversary=True)
    started = datetime(2024, 2, 29)
    # When asking in 2025 before and after 28 February, and in the next leap year
    # Then the billing date is 28 February outside leap years and the 29th inside
    assert period_for(schedule, datetime(2025, 2, 27), started).key == "2024-02-29"
    assert period_for(schedule, datetime(2025, 2, 28), started).key == "2025-02-28"
    assert period_for(schedule, datetime(2028, 3, 1), started).key == "2028-02-29"


def test_a_quarterly_anniversary_is_billed_every_three_months_from_the_start():
    # Given a quarterly anniversary schedule started on 15 November 2026
    schedule = Schedule(Interval.QUARTERLY, anniversary=True)
    started = datetime(2026, 11, 15)
    # When asking across the first cycles, Then the billing dates step by three months
    assert period_for(schedule, datetime(2026, 11, 15), started).key == "2026-11-15"
    assert period_for(schedule, datetime(2027, 2, 14), started).key == "2026-11-15"
    assert period_for(schedule, datetime(2027, 2, 15), started).key == "2027-02-15"
    assert period_for(schedule, datetime(2027, 5, 31), started).key == "2027-05-15"


def test_anniversary_without_a_start_date_falls_back_to_the_calendar():
    # Given an anniversary schedule and a subscription whose create_date is NULL
    # When asking for its period, Then it is the calendar month
    period = period_for(Schedule(anniversary=True), datetime(2026, 11, 21), None)
    assert period.key == "2026-11"


def test_a_subscription_started_later_in_the_month_is_in_its_first_cycle():
    # Given a monthly anniversary started today at noon, asked about the same day's morning
    started = datetime(2026, 11, 21, 12)
    # When asking for its period, Then it is its first cycle (never a cycle before it began)
    assert period_for(Schedule(anniversary=True), datetime(2026, 11, 21, 1), started).key == (
        "2026-11-21"
    )
