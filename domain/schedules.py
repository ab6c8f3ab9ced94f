"""When a subscription is billed: its club's schedule, the period key and its billing date.

A club without a schedule row bills by UTC calendar month, as the charge endpoint always
did. Period keys are short strings that sort and read well:

| schedule              | key          | billing date                      |
|-----------------------|--------------|-----------------------------------|
| monthly (calendar)    | `2026-11`    | the 1st of the month              |
| quarterly (calendar)  | `2026-Q4`    | the 1st of the quarter            |
| annual (calendar)     | `2026`       | 1 January                         |
| any, anniversary mode | `2026-11-30` | the cycle's billing date itself   |

In anniversary mode a subscription is billed every 1, 3 or 12 months on the day of the
month it started; a day the month does not have (the 31st, 29 February) falls on the
month's last day. A subscription without a start date (NULL from SQL) falls back to the
calendar.

A schedule changes at a boundary, never inside a period: the previous schedule keeps
billing up to the end of its period that held the change (`changed_at`, stored by a
trigger on billing_schedule), and the new one starts at its first period boundary at or
after that end. Where the two schedules' boundaries do not line up, the span between is
not billed at all (never twice): `period_in_effect` returns None there.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum


class Interval(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNUAL = "annual"

    @property
    def months(self) -> int:
        return {"monthly": 1, "quarterly": 3, "annual": 12}[self.value]


@dataclass(frozen=True)
class Schedule:
    interval: Interval = Interval.MONTHLY
    anniversary: bool = False
    # When this schedule replaced `previous` (None: always in effect).
    changed_at: datetime | None = None
    previous: Schedule | None = None

    @property
    def rule(self) -> tuple[Interval, bool]:
        return (self.interval, self.anniversary)


DEFAULT = Schedule()


@dataclass(frozen=True)
class Period:
    """One billing cycle of a subscription: its ledger key and the day it is billed."""

    key: str
    billing_date: datetime


def _month_index(day: date | datetime) -> int:
    return day.year * 12 + day.month - 1


def _clamped(index: int, day: int) -> date:
    """Day `day` of the month with this index, or the month's last day if it is shorter."""
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day, last))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min)


def _calendar(interval: Interval, now: datetime) -> Period:
    if interval == Interval.ANNUAL:
        return Period(f"{now.year:04d}", datetime(now.year, 1, 1))
    if interval == Interval.QUARTERLY:
        quarter = (now.month - 1) // 3
        return Period(f"{now.year:04d}-Q{quarter + 1}", datetime(now.year, quarter * 3 + 1, 1))
    return Period(f"{now.year:04d}-{now.month:02d}", datetime(now.year, now.month, 1))


def _anniversary(interval: Interval, now: datetime, anchor: datetime) -> Period:
    step = interval.months
    cycles = max((_month_index(now) - _month_index(anchor)) // step, 0)
    billed = _clamped(_month_index(anchor) + cycles * step, anchor.day)
    if billed > now.date() and cycles > 0:
        billed = _clamped(_month_index(anchor) + (cycles - 1) * step, anchor.day)
    return Period(billed.isoformat(), _midnight(billed))


def period_for(schedule: Schedule, now: datetime, anchor: datetime | None) -> Period:
    """The period a subscription is in at `now`; `anchor` is its start (create_date)."""
    if schedule.anniversary and anchor is not None:
        return _anniversary(schedule.interval, now, anchor)
    return _calendar(schedule.interval, now)


def following(schedule: Schedule, now: datetime, anchor: datetime | None) -> Period:
    """The first period that starts after `now` (the boundary a club change waits for)."""
    current = period_for(schedule, now, anchor)
    if current.billing_date > now:
        # Before an anniversary subscription's first billing date: that date is the boundary.
        return current
    index = _month_index(current.billing_date) + schedule.interval.months
    if schedule.anniversary and anchor is not None:
        day = _clamped(index, anchor.day)
    else:
        day = _clamped(index, 1)
    return period_for(schedule, _midnight(day), anchor)


def _add_months(day: datetime, months: int) -> datetime:
    return _midnight(_clamped(_month_index(day) + months, day.day))


def period_end(schedule: Schedule, period: Period, anchor: datetime | None) -> datetime:
    """The first instant after `period` (the next period's billing date)."""
    step = schedule.interval.months
    if schedule.anniversary and anchor is not None:
        return _midnight(_clamped(_month_index(period.billing_date) + step, anchor.day))
    return _add_months(period.billing_date, step)


def _next_start(schedule: Schedule, at: datetime, anchor: datetime | None) -> datetime:
    """The first period start of `schedule` at or after `at`."""
    period = period_for(schedule, at, anchor)
    if period.billing_date >= at:
        return period.billing_date
    return period_end(schedule, period, anchor)


def switch_over(schedule: Schedule, anchor: datetime | None) -> tuple[datetime, datetime]:
    """(until, starts): the previous schedule bills periods starting before `until`, the
    new one periods starting at or after `starts`; nothing is billed in between."""
    previous = schedule.previous or DEFAULT
    assert schedule.changed_at is not None
    cursor = period_end(previous, period_for(previous, schedule.changed_at, anchor), anchor)
    for _ in range(48):
        start = _next_start(schedule, cursor, anchor)
        if start == cursor:
            return cursor, start
        old_end = period_end(previous, period_for(previous, cursor, anchor), anchor)
        if old_end > start:
            # Misaligned boundaries: leave [cursor, start) unbilled rather than bill twice.
            return cursor, start
        cursor = old_end
    return cursor, _next_start(schedule, cursor, anchor)


def period_in_effect(schedule: Schedule, now: datetime, anchor: datetime | None) -> Period | None:
    """The period to bill at `now` under a schedule that may have just changed; None in
    the unbilled span of a change whose boundaries do not line up."""
    previous = schedule.previous or DEFAULT
    if schedule.changed_at is None or previous.rule == schedule.rule:
        return period_for(schedule, now, anchor)
    until, starts = switch_over(schedule, anchor)
    if now < until:
        return period_for(previous, now, anchor)
    if now < starts:
        return None
    return period_for(schedule, now, anchor)


def end_in_effect(schedule: Schedule, now: datetime, anchor: datetime | None) -> datetime | None:
    """When the period billed at `now` ends (None in the unbilled span of a change)."""
    period = period_in_effect(schedule, now, anchor)
    if period is None:
        return None
    rule = schedule
    previous = schedule.previous or DEFAULT
    if schedule.changed_at is not None and previous.rule != schedule.rule:
        until, _ = switch_over(schedule, anchor)
        if now < until:
            rule = previous
    return period_end(rule, period, anchor)


def next_boundary(schedule: Schedule, now: datetime, anchor: datetime | None) -> datetime:
    """The first instant after `now` where a billed period starts, or where the unbilled
    span of a schedule change begins (what a club change waits for)."""
    end = end_in_effect(schedule, now, anchor)
    if end is not None:
        return end
    # Inside the unbilled span of a change: the new schedule's first period.
    return switch_over(schedule, anchor)[1]
