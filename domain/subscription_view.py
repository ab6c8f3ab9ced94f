"""One subscription as the website shows it: its club, its status over time, and where
its billing stands (the current period, and the unpaid periods billing still retries).

The billing part follows the billing run (domain/billing.py): the period comes from the
club's schedule as billing applies it (a changed schedule takes effect at a boundary, and
between two schedules whose boundaries do not meet no period is billed: `period` is None);
a declined period is retried until the retry window after its first decline
(billing.window_closed); a period whose attempts failed on the platform's side (`error`,
`unknown`, `pending`) is retried by every run until the period ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import errors, schedules
from domain.charges import Charge, ChargeState
from domain.ports import UnitOfWork
from domain.read_model import HistoryRow, SubscriptionRecord
from domain.timelines import timeline

UNPAID = frozenset(
    {ChargeState.PENDING, ChargeState.FAILED, ChargeState.UNKNOWN, ChargeState.ERROR}
)
LEDGER_HORIZON = timedelta(days=400)


@dataclass(frozen=True)
class UnpaidPeriod:
    charge: Charge
    retry_until: datetime


@dataclass(frozen=True)
class SubscriptionView:
    record: SubscriptionRecord
    status_id: int | None
    since: datetime | None
    scheduled: tuple[HistoryRow, ...]
    period: schedules.Period | None
    period_charge: Charge | None
    unpaid: tuple[UnpaidPeriod, ...]


def retry_until(
    charge: Charge, retry_window: timedelta, period_ends: datetime | None
) -> datetime | None:
    """Until when billing retries this unpaid period: a declined one until its window
    closes (billing.window_closed), any other only while it is the current period."""
    if charge.declined_at is not None:
        return charge.declined_at + retry_window
    return period_ends


def view(
    uow: UnitOfWork, subscription_id: str, now: datetime, retry_window: timedelta
) -> SubscriptionView:
    with uow:
        # A period is at most a year: its ledger row was created within the last 400 days.
        record = uow.views.subscription(subscription_id, now, now - LEDGER_HORIZON)
    if record is None:
        raise errors.SubscriptionNotFound(subscription_id)
    period = schedules.period_in_effect(record.schedule, now, record.create_date)
    ledger = record.ledger
    now_and_later = timeline(record.history, now)
    ends = schedules.end_in_effect(record.schedule, now, record.create_date)
    unpaid = []
    for charge in ledger:
        if charge.state not in UNPAID:
            continue
        until = retry_until(
            charge, retry_window, ends if period and charge.period == period.key else None
        )
        if until is not None and now < until:
            unpaid.append(UnpaidPeriod(charge, until))
    return SubscriptionView(
        record=record,
        status_id=now_and_later.status_id,
        since=now_and_later.since,
        scheduled=now_and_later.scheduled,
        period=period,
        period_charge=next((c for c in ledger if period and c.period == period.key), None),
        unpaid=tuple(unpaid),
    )
