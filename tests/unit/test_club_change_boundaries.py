"""The period boundary a club change waits for (domain/schedules.following)."""

from __future__ import annotations

from datetime import datetime

import pytest

from domain.schedules import Interval, Schedule, following

MONTHLY = Schedule()
QUARTERLY = Schedule(Interval.QUARTERLY)
ANNUAL = Schedule(Interval.ANNUAL)
ANNIVERSARY = Schedule(Interval.MONTHLY, anniversary=True)
QUARTERLY_ANNIVERSARY = Schedule(Interval.QUARTERLY, anniversary=True)


@pytest.mark.parametrize(
    ("schedule", "now", "anchor", "key", "boundary"),
    [
        (MONTHLY, datetime(2026, 11, 21, 12), None, "2026-12", datetime(2026, 12, 1)),
        (MONTHLY, datetime(2026, 12, 31, 23, 59), None, "2027-01", datetime(2027, 1, 1)),
        (QUARTERLY, datetime(2026, 11, 21), None, "2027-Q1", datetime(2027, 1, 1)),
        (ANNUAL, datetime(2026, 1, 1), None, "2027", datetime(2027, 1, 1)),
        # A 31st falls on the last day of shorter months, and comes back on the 31st
        (
            ANNIVERSARY,
            datetime(2027, 2, 10),
            datetime(2026, 1, 31, 10),
            "2027-02-28",
            datetime(2027, 2, 28),
        ),
        (
            ANNIVERSARY,
            datetime(2027, 2, 28, 1),
            datetime(2026, 1, 31, 10),
            "2027-03-31",
            datetime(2027, 3, 31),
        ),
        (
            ANNIVERSARY,
            datetime(2028, 1, 30),
            datetime(2027, 1, 29),
            "2028-02-29",
            datetime(2028, 2, 29),
        ),
        (
            QUARTERLY_ANNIVERSARY,
            datetime(2026, 12, 1),
            datetime(2026, 11, 30, 8),
            "2027-02-28",
            datetime(2027, 2, 28),
        ),
        # Before an anniversary subscription's first billing day, that day is the boundary
        (
            ANNIVERSARY,
            datetime(2026, 11, 29),
            datetime(2026, 11, 30, 8),
            "2026-11-30",
            datetime(2026, 11, 30),
        ),
    ],
)
def test_the_boundary_is_the_start_of_the_next_period(schedule, now, anchor, key, boundary):
    period = following(schedule, now, anchor)
    assert (period.key, period.billing_date) == (key, boundary)
    assert boundary > now
