"""One subscription as the website shows it: its club, its status over time, and where
its billing stands (the current period, and the unpaid periods billing still retries).

The billing part follows the billing run (domain/billing.py): the period comes from the
club's schedule (domain/schedules.py), and a failed period is retried until the retry
window after its billing date, or after its first attempt when that came later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import errors, schedules
from domain.charges import Charge, ChargeState
from domain.ports import UnitOfWork
from domain.read_model import HistoryRow, SubscriptionRecord
from domain.timelines import timeline

UNPAID = frozenset({ChargeState.PENDING, ChargeState.FAILED, ChargeState.UNKNOWN})
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
    period: schedules.Period
    period_charge: Charge | None
    unpaid: tuple[UnpaidPeriod, ...]


def retry_until(charge: Charge, retry_window: timedelta) -> datetime:
    """The end of a period's retry window, as the billing run computes it."""
    opened = max(charge.billing_date or charge.created_at, charge.created_at)
    return opened + retry_window


def view(
    uow: UnitOfWork, subscription_id: str, now: datetime, retry_window: timedelta
) -> SubscriptionView:
    with uow:
        # A period is at most a year: its ledger row was created within the last 400 days.
        record = uow.views.subscription(subscription_id, now, now - LEDGER_HORIZON)
    if record is None:
        raise errors.SubscriptionNotFound(subscription_id)
    period = schedules.period_for(record.schedule, now, record.create_date)
    ledger = record.ledger
    now_and_later = timeline(record.history, now)
    unpaid = tuple(
        UnpaidPeriod(charge, retry_until(charge, retry_window))
        for charge in ledger
        if charge.state in UNPAID and now < retry_until(charge, retry_window)
    )
    return SubscriptionView(
        record=record,
        status_id=now_and_later.status_id,
        since=now_and_later.since,
        scheduled=now_and_later.scheduled,
        period=period,
        period_charge=next((c for c in ledger if c.period == period.key), None),
        unpaid=unpaid,
    )
