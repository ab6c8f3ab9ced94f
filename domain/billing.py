"""The billing run: which subscriptions to charge now, and charging (or ending) each one.

`plan` streams the eligible subscriptions and says, for each, what its periods still need
(a message naming the period and the step: charge, cancel or abandon);
domain/settlement.py carries out one message after re-reading the ledger under lock, with
the same `charges.charge` as the endpoint, so the ledger keeps each period exactly once
however often a message comes.

Only declines (402, 422, a payment-outcome failure) open and fill a period's retry window
(`retry_window` from its first decline). A declined period is retried inside its own
window even after the next period began. When the window closes the period is abandoned,
and the subscription cancelled only if no later period has been paid. Platform failures
(refused credentials, throttling, 5xx, timeouts) never cancel anyone: such a period is
retried until it ends, then abandoned (or settled by reconciliation when its outcome is
unknown). A card report cancels the subscriptions created before it, unless a later
successful charge cleared it. domain/cancellation_breaker.py puts the breaker in front of the
cancellations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain import schedules
from domain.charges import Charge, ChargeState
from domain.model import SHIPPING_CLUB_STATUSES
from domain.ports import UnitOfWork

# Fixed forever: request ids derived from it must stay the same across deployments.
REQUEST_ID_NAMESPACE = uuid.UUID("6f1c8f2e-5b7d-4e1a-9c3b-2d4e6f8a0b1c")
DEFAULT_RETRY_WINDOW = timedelta(days=5)
DEFAULT_PENDING_TIMEOUT = timedelta(seconds=60)
# States after which a period needs nothing more.
SETTLED = frozenset({ChargeState.SUCCEEDED, ChargeState.ABANDONED})
FAILED = ChargeState.FAILED


class Step(StrEnum):
    """What a billing message asks the worker to do for its period."""

    CHARGE = "charge"
    CANCEL = "cancel"
    ABANDON = "abandon"


class Outcome(StrEnum):
    CHARGED = "charged"
    ALREADY_CHARGED = "already charged"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    # The platform failed or refused us with an answer we relay (400, 404, 409).
    PLATFORM_ERROR = "platform error"
    ABANDONED = "abandoned"


def request_id_for(subscription_id: str, period: str, failed_attempts: int = 0) -> str:
    """The deterministic request id of a period's charge (36 characters).

    After a known refusal the platform may hold a failed order under the previous id,
    so each retry after a refusal gets its own id, still derived from the ledger.
    """
    name = f"{subscription_id}:{period}"
    if failed_attempts:
        name += f":{failed_attempts}"
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, name))


@dataclass(frozen=True)
class Candidate:
    """An eligible subscription as the run streams it."""

    subscription_id: str
    schedule: schedules.Schedule
    started: datetime | None


@dataclass(frozen=True)
class CardReport:
    """The platform told us this customer's card can no longer be charged."""

    customer_id: str
    reason: str
    reported_at: datetime


@dataclass(frozen=True)
class LedgerState:
    state: ChargeState
    attempts: int
    period: str = ""
    billing_date: datetime | None = None
    created_at: datetime | None = None
    declined_at: datetime | None = None
    last_attempt_at: datetime | None = None


@dataclass(frozen=True)
class BillingMessage:
    """One subscription to settle: the body of one queue message."""

    subscription_id: str
    period: str
    request_id: str
    step: Step = Step.CHARGE
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        data = asdict(self)
        data["step"] = self.step.value
        return data

    @classmethod
    def from_dict(cls, data: object) -> BillingMessage:
        if not isinstance(data, dict):
            raise ValueError("a billing message is a JSON object")
        values = {name: data.get(name) for name in ("subscription_id", "period", "request_id")}
        if not all(isinstance(v, str) and 0 < len(v) <= 36 for v in values.values()):
            raise ValueError("a billing message needs subscription_id, period and request_id")
        try:
            # A message from before steps existed only ever charges.
            step = Step(data.get("step") or Step.CHARGE)
        except ValueError:
            raise ValueError("a billing message's step is charge, cancel or abandon") from None
        reason = data.get("reason") if isinstance(data.get("reason"), str) else ""
        return cls(**values, step=step, reason=reason[:256])


@dataclass(frozen=True)
class Planned:
    """The run's decision for one eligible subscription: a message, or why none is needed."""

    message: BillingMessage | None
    settled_as: ChargeState | None = None
    subscription_id: str | None = None


def window_closed(row: LedgerState | Charge, now: datetime, retry_window: timedelta) -> bool:
    """A declined period's retry window opened at its first decline (rows from before
    revision 0007: the later of billing date and first attempt)."""
    return row.declined_at is not None and now >= row.declined_at + retry_window


def _stale(row: LedgerState, now: datetime, pending_timeout: timedelta) -> bool:
    return row.last_attempt_at is not None and row.last_attempt_at <= now - pending_timeout


def decide(
    candidate: Candidate,
    current: schedules.Period | None,
    rows: list[LedgerState],
    card: CardReport | None,
    latest_paid: datetime | None,
    now: datetime,
    retry_window: timedelta,
    pending_timeout: timedelta,
) -> tuple[list[BillingMessage], ChargeState | None]:
    """What one subscription needs now: its messages, and how its current period stands.

    `rows` are its ledger rows of the current period and every unsettled one."""
    sub = candidate.subscription_id
    now_row = next((r for r in rows if current and r.period == current.key), None)
    settled = now_row.state if now_row is not None and now_row.state in SETTLED else None
    if card is not None and settled is None and current is not None:
        reason = f"card {card.reason} (reported {card.reported_at:%Y-%m-%d})"
        cancel = BillingMessage(sub, current.key, "-", Step.CANCEL, reason)
        return [cancel], None
    messages: list[BillingMessage] = []
    earlier = [r for r in rows if r is not now_row and r.state not in SETTLED]
    for row in sorted(earlier, key=lambda r: (r.billing_date or datetime.min, r.period)):
        if row.state == ChargeState.ERROR:
            # A period that ended after platform failures only: nobody is cancelled.
            messages.append(BillingMessage(sub, row.period, "-", Step.ABANDON))
        elif row.state != FAILED:
            continue  # unknown or pending: reconciliation asks the platform
        elif not window_closed(row, now, retry_window):
            retry = request_id_for(sub, row.period, row.attempts)
            messages.append(BillingMessage(sub, row.period, retry))
        elif latest_paid is not None and row.billing_date and latest_paid > row.billing_date:
            messages.append(BillingMessage(sub, row.period, "-", Step.ABANDON))
        else:
            reason = f"no successful charge for {row.period} within {window_days(retry_window)}"
            return [BillingMessage(sub, row.period, "-", Step.CANCEL, reason)], settled
    if current is None or settled is not None:
        return messages, settled
    if (
        now_row is not None
        and now_row.state == FAILED
        and window_closed(now_row, now, retry_window)
    ):
        reason = f"no successful charge for {current.key} within {window_days(retry_window)}"
        return [BillingMessage(sub, current.key, "-", Step.CANCEL, reason)], None
    in_flight = now_row is not None and now_row.state == ChargeState.PENDING
    if in_flight and not _stale(now_row, now, pending_timeout):
        return messages, None
    failed = now_row.attempts if now_row is not None and now_row.state == FAILED else 0
    messages.append(BillingMessage(sub, current.key, request_id_for(sub, current.key, failed)))
    return messages, None


def plan(
    uow: UnitOfWork,
    now: datetime,
    chunk: int = 1000,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
    pending_timeout: timedelta = DEFAULT_PENDING_TIMEOUT,
    after: str | None = None,
    in_order: bool = False,
    cancellable_only: bool = False,
) -> Iterator[Planned]:
    """Stream every eligible subscription with what its periods still need.

    The eligible set comes from a server-side cursor, `chunk` rows at a time, and the
    ledger (current and unsettled periods) and card reports are read once per chunk:
    memory stays bounded by the chunk, not the set. `in_order`: by subscription id, from
    after `after` (the run's checkpoint). Several messages of one subscription come
    together, each Planned naming the subscription. `cancellable_only`: only the
    subscriptions `decide` could cancel (a card report, or a declined period whose window
    closed); the others' plans hold no cancellation.
    """
    with uow:
        options: dict = {"after": after, "in_order": True} if in_order or after else {}
        if cancellable_only:
            options["declined_before"] = now - retry_window
        for rows in uow.billing.eligible(now, SHIPPING_CLUB_STATUSES, chunk, **options):
            periods = {
                row.subscription_id: schedules.period_in_effect(row.schedule, now, row.started)
                for row in rows
            }
            keys = [(sub, period.key) for sub, period in periods.items() if period is not None]
            ledger = uow.billing.open_ledger(list(periods), keys)
            cards = uow.billing.card_reports(list(periods))
            for row in rows:
                sub = row.subscription_id
                recorded = ledger.get(sub, [])
                latest_paid = None
                if any(r.state == FAILED and window_closed(r, now, retry_window) for r in recorded):
                    latest_paid = uow.charges.latest_paid(sub)
                messages, settled = decide(
                    row,
                    periods[sub],
                    recorded,
                    cards.get(sub),
                    latest_paid,
                    now,
                    retry_window,
                    pending_timeout,
                )
                if not messages:
                    yield Planned(None, settled, sub)
                for message in messages:
                    yield Planned(message, settled, sub)


def eligible_count(uow: UnitOfWork, now: datetime) -> int:
    """How many subscriptions a run at `now` looks at (for a progress bar)."""
    with uow:
        return uow.billing.count_eligible(now, SHIPPING_CLUB_STATUSES)


def window_days(window: timedelta) -> str:
    """A retry window as its reasons write it: "5 days"."""
    days = window / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")
