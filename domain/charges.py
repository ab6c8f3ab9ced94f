"""Charging a subscription exactly once per billing period, through the platform port.

The ledger row is committed (pending) before calling out, so concurrent and retried
requests see it. Every write names the state (and attempt) it expects; the loser of a
race re-reads and decides again. After anything but a decline the next attempt reuses
the request id already sent, so the platform can deduplicate; only a decline (402, 422,
a payment-outcome failure) gets a new one. Each request id is claimed for one
(subscription, period) before it is sent. docs/money-path.md has the state diagram.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain import anomalies, audit, errors, schedules
from domain.audit import Action, AuditEntry
from domain.model import SHIPPING_CLUB_STATUSES, ClubStatus, SubscriptionStatus, status_name
from domain.ports import Ecommerce, PlatformAnswer, UnitOfWork


class ChargeState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    # The retry window closed without a successful charge: final, never sent again.
    ABANDONED = "abandoned"
    # The platform refused us (401/403/408/429, other 4xx) or the request was never sent:
    # no order exists; retried with the same id; never counts towards cancellation.
    ERROR = "error"


# The customer's card: the only answers that open and fill the retry window.
DECLINES = frozenset({402, 422})
# The platform refusing our credentials or throttling us: our problem, never the caller's.
REFUSALS = frozenset({401, 403, 408, 429})
REQUEST_KIND = "charge"


def answer_state(status: int) -> ChargeState:
    """What a platform answer means for the ledger."""
    if 200 <= status < 300:
        return ChargeState.SUCCEEDED
    if status in DECLINES:
        return ChargeState.FAILED
    if 400 <= status < 500:
        return ChargeState.ERROR
    # A 5xx (or anything else) may come after the order was created.
    return ChargeState.UNKNOWN


def subject(subscription_id: str, period: str) -> str:
    """What a charge request id is for, in the platform_request registry."""
    return f"{subscription_id}:{period}"


def claim_request_id(uow: UnitOfWork, request_id: str, what: str, now: datetime) -> None:
    """Register a request id for one subject before it is sent; RequestIdInUse if another
    subject (a subscription or period) already sent it."""
    if not uow.requests.claim(request_id, REQUEST_KIND, what, now):
        raise errors.RequestIdInUse(request_id)


@dataclass(frozen=True)
class ChargeTarget:
    """What charging needs to know about a subscription, at an instant."""

    subscription_id: str
    customer_id: str | None
    sku_id: int | None
    status_id: int | None
    club_status_id: int | None
    schedule: schedules.Schedule = schedules.DEFAULT
    # The subscription's create_date: the anchor of anniversary billing.
    started: datetime | None = None

    def period(self, now: datetime) -> schedules.Period | None:
        """The period to bill at `now` (None while a schedule change leaves it unbilled)."""
        return schedules.period_in_effect(self.schedule, now, self.started)


@dataclass(frozen=True)
class Charge:
    id: int
    subscription_id: str
    period: str
    request_id: str
    state: ChargeState
    attempts: int
    platform_status: int | None
    platform_body: str | None
    created_at: datetime
    updated_at: datetime
    last_attempt_at: datetime
    billing_date: datetime | None = None
    failure_reason: str | None = None
    declined_at: datetime | None = None
    paid_request_id: str | None = None
    outcome_at: datetime | None = None


@dataclass(frozen=True)
class ChargeResult:
    """A charge placed now (with the platform's answer) or replayed from the ledger."""

    charge: Charge
    answer: PlatformAnswer | None = None

    @property
    def replayed(self) -> bool:
        return self.answer is None


def not_eligible_reason(target: ChargeTarget) -> str | None:
    if target.status_id != SubscriptionStatus.ACTIVE:
        return f"its status is {status_name(SubscriptionStatus, target.status_id) or 'unset'}"
    if target.club_status_id not in SHIPPING_CLUB_STATUSES:
        return f"its club is {status_name(ClubStatus, target.club_status_id) or 'without status'}"
    if not target.customer_id:
        return "it has no customer id"
    if target.sku_id is None:
        return "its club has no store SKU"
    return None


def _require_eligible(target: ChargeTarget) -> None:
    reason = not_eligible_reason(target)
    if reason:
        raise errors.SubscriptionNotEligible(target.subscription_id, reason)


def _is_stale(charge: Charge, now: datetime, pending_timeout: timedelta) -> bool:
    return charge.last_attempt_at <= now - pending_timeout


def _request_id_for_retry(charge: Charge, requested: str) -> str:
    # Only a decline gets a new id: after anything else the platform may hold the order.
    if charge.state == ChargeState.FAILED:
        return requested
    return charge.request_id


def charge(
    uow: UnitOfWork,
    platform: Ecommerce,
    subscription_id: str,
    request_id: str,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
    actor: str = audit.CHARGE_ENDPOINT,
    period: schedules.Period | None = None,
) -> ChargeResult:
    """Charge the subscription's current period (its club's schedule) exactly once;
    `period` names another one (the billing run retrying a declined earlier period)."""
    now = clock()
    with uow:
        target = uow.charges.target(subscription_id, now)
        if target is None:
            raise errors.SubscriptionNotFound(subscription_id)
        # Configuration and secrets before any write: a missing one answers 503 and
        # leaves no ledger row (and no claimed request id) behind.
        platform.ready()
        wanted = period or target.period(now)
        if wanted is None:
            raise errors.SubscriptionNotEligible(
                subscription_id, "its club's billing schedule is changing; nothing is due yet"
            )
        claimed = _claim(uow, target, wanted, request_id, now, pending_timeout)
        if isinstance(claimed, ChargeResult):
            return claimed
        uow.audit.add(
            AuditEntry(
                Action.CHARGE_ATTEMPT,
                actor,
                now,
                subscription_id,
                claimed.period,
                claimed.id,
                claimed.request_id,
                target.customer_id,
                f"attempt {claimed.attempts}",
            )
        )
        uow.commit()
    # The pending row is committed: concurrent and retried requests now see it.
    return _call_out(uow, platform, claimed, target, clock, actor)


def _claim(
    uow: UnitOfWork,
    target: ChargeTarget,
    period: schedules.Period,
    request_id: str,
    now: datetime,
    pending_timeout: timedelta,
) -> Charge | ChargeResult:
    """The ledger row to call out with, or the recorded charge to replay."""
    if not_eligible_reason(target) is None:
        # The period's first attempt (the common case) in one statement: its row and
        # attempt, or nothing when the period has a row. Its request id is claimed in the
        # same transaction: a conflict raises, and the row is rolled back with it.
        created = uow.charges.create_pending(
            target, period.key, request_id, now, billing_date=period.billing_date
        )
        if created is not None:
            claim_request_id(uow, request_id, subject(target.subscription_id, period.key), now)
            return created
    # The period has a row (a retry, a replay, or a concurrent request that inserted it
    # first: judge what it committed), or the subscription is not eligible.
    ledger = uow.charges.find_for_update(target.subscription_id, period.key)
    if ledger is None:
        _require_eligible(target)
        # Eligible, yet the row we collided with is gone: whoever removed it holds it.
        raise errors.ChargeInProgress(target.subscription_id, period.key)
    if ledger.state == ChargeState.SUCCEEDED:
        return ChargeResult(ledger)
    if ledger.state == ChargeState.ABANDONED:
        raise errors.ChargeAbandoned(target.subscription_id, period.key)
    _require_eligible(target)
    stale = ledger.state == ChargeState.PENDING and _is_stale(ledger, now, pending_timeout)
    if ledger.state == ChargeState.PENDING and not stale:
        raise errors.ChargeInProgress(target.subscription_id, period.key)
    sent = _request_id_for_retry(ledger, request_id)
    if sent != ledger.request_id:
        claim_request_id(uow, sent, subject(target.subscription_id, period.key), now)
    begun = uow.charges.begin_attempt(ledger, sent, target, now)
    if begun is None:
        # Another writer moved the row since we read it: it is theirs now.
        raise errors.ChargeInProgress(target.subscription_id, period.key)
    return begun


def _call_out(
    uow: UnitOfWork,
    platform: Ecommerce,
    ledger: Charge,
    target: ChargeTarget,
    clock: Callable[[], datetime],
    actor: str,
) -> ChargeResult:
    def record(state: ChargeState, status: int | None, body: str | None, error: str | None):
        return _record(uow, ledger, state, status, body, error, clock(), actor)

    try:
        answer = platform.place_order(ledger.request_id, target.customer_id, target.sku_id)
    except errors.PlatformError as exc:
        # Not sent: no order can exist (error). Sent: the platform may hold it (unknown).
        record(ChargeState.UNKNOWN if exc.sent else ChargeState.ERROR, None, None, exc.message)
        raise
    except Exception as exc:
        # Anything else may have happened after the request left: unknown, same id next
        # time, and never a row stuck pending until the timeout.
        record(ChargeState.UNKNOWN, None, None, f"unexpected error: {type(exc).__name__}")
        raise
    state = answer_state(answer.status)
    recorded = record(state, answer.status, answer.text, None)
    if state == ChargeState.UNKNOWN:
        raise errors.PlatformFailed(
            f"the e-commerce platform failed with HTTP {answer.status}",
            platform_status=answer.status,
        )
    if answer.status in REFUSALS:
        raise errors.PlatformRefused(
            answer.status, answer.json if answer.is_json else answer.text, answer.retry_after
        )
    return ChargeResult(recorded or ledger, answer)


def _record(
    uow: UnitOfWork,
    ledger: Charge,
    state: ChargeState,
    status: int | None,
    body: str | None,
    error: str | None,
    now: datetime,
    actor: str,
) -> Charge | None:
    """Store an attempt's answer. Its state applies only to a row still pending on this
    attempt; the answer itself is kept even when a webhook settled the row first."""
    answer = f"HTTP {status}" if status is not None else (error or "no answer")
    with uow:
        recorded = uow.charges.record(ledger, state, status, body, error, now)
        note = ""
        if recorded is None:
            note = "; a newer attempt had taken the row over"
        elif recorded.state != state:
            note = f"; the row was already {recorded.state.value}"
        uow.audit.add(
            AuditEntry(
                Action.CHARGE_OUTCOME,
                actor,
                now,
                ledger.subscription_id,
                ledger.period,
                ledger.id,
                ledger.request_id,
                details=f"attempt {ledger.attempts}: {state.value} ({answer}){note}",
            )
        )
        if state == ChargeState.SUCCEEDED and (recorded is None or recorded.state != state):
            # Paid, but the row says otherwise: a success for any order marks the period
            # paid; a second paid order is a double charge.
            current = uow.charges.find_by_request_id(ledger.request_id)
            if current is not None:
                recorded = mark_paid(uow, current, ledger.request_id, None, now, actor)
        elif recorded is not None and state == ChargeState.SUCCEEDED:
            _card_cleared(uow, recorded, now, actor, recorded.platform_status)
        uow.commit()
    return recorded


def mark_paid(
    uow: UnitOfWork,
    charge: Charge,
    request_id: str,
    occurred_at: datetime | None,
    now: datetime,
    actor: str,
    event_id: str | None = None,
) -> Charge:
    """Order `request_id` of this (locked) row's period was paid. Paid is final: a second
    paid order is recorded as a double charge, never hidden and never undone here."""
    if charge.state == ChargeState.SUCCEEDED:
        paid = charge.paid_request_id or charge.request_id
        if paid == request_id and occurred_at is not None and charge.outcome_at is None:
            # The platform's own time of the success: later failures are judged by it.
            dated = uow.charges.transition(
                charge, ChargeState.SUCCEEDED, now, paid_request_id=paid, outcome_at=occurred_at
            )
            return dated or charge
        if paid != request_id:
            anomalies.record(
                uow,
                anomalies.Kind.DOUBLE_CHARGE,
                charge,
                request_id,
                now,
                actor,
                f"order {request_id} was paid, but order {paid} had already paid "
                f"{charge.period}: refund one (docs/money-path.md, double-charge runbook)",
                event_id,
            )
        return charge
    updated = uow.charges.transition(
        charge,
        ChargeState.SUCCEEDED,
        now,
        reason=None,
        paid_request_id=request_id,
        outcome_at=occurred_at,
    )
    if updated is None:
        # Lost a race (rows are locked, so only a concurrent writer without the lock):
        # re-read and judge again.
        again = uow.charges.find_by_request_id(request_id)
        return mark_paid(uow, again, request_id, occurred_at, now, actor, event_id)
    if charge.state == ChargeState.ABANDONED:
        anomalies.record(
            uow,
            anomalies.Kind.PAID_AFTER_ABANDON,
            updated,
            request_id,
            now,
            actor,
            f"order {request_id} was paid after {charge.period} had been abandoned: "
            "check whether billing cancelled the subscription for it and undo that",
            event_id,
        )
    _card_cleared(uow, updated, now, actor, None)
    return updated


def _card_cleared(
    uow: UnitOfWork, charge: Charge, now: datetime, actor: str, _status: int | None
) -> None:
    customer = uow.billing.clear_card_report(charge.subscription_id, now)
    if customer is not None:
        uow.audit.add(
            AuditEntry(
                Action.CARD_CLEARED,
                actor,
                now,
                charge.subscription_id,
                charge.period,
                charge.id,
                charge.paid_request_id or charge.request_id,
                customer,
                "a successful charge cleared the card-unavailable report",
            )
        )


def describe(charge: Charge) -> dict[str, Any]:
    return {
        "subscription_id": charge.subscription_id,
        "period": charge.period,
        "request_id": charge.request_id,
        "state": charge.state.value,
        "attempts": charge.attempts,
        "platform_status": charge.platform_status,
        "charged_at": charge.updated_at.isoformat(),
    }
