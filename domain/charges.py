"""Charging a subscription exactly once per billing period, through the platform port.

The ledger row is committed (pending) before calling out, so concurrent and retried
requests see it. After an outcome that leaves the platform's side unknown (a timeout,
a dropped connection, a 5xx, or a pending row whose Lambda died), the next attempt
reuses the request id already sent, so the platform can deduplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain import audit, errors, schedules
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

    def period(self, now: datetime) -> schedules.Period:
        return schedules.period_for(self.schedule, now, self.started)


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


def _request_id_for_retry(charge: Charge, requested: str, stale: bool) -> str:
    if charge.state == ChargeState.UNKNOWN or stale:
        return charge.request_id
    return requested


def charge(
    uow: UnitOfWork,
    platform: Ecommerce,
    subscription_id: str,
    request_id: str,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
    actor: str = audit.CHARGE_ENDPOINT,
) -> ChargeResult:
    """Charge the subscription's current period (its club's schedule) exactly once."""
    now = clock()
    with uow:
        target = uow.charges.target(subscription_id, now)
        if target is None:
            raise errors.SubscriptionNotFound(subscription_id)
        claimed = _claim(uow, target, target.period(now), request_id, now, pending_timeout)
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
    ledger = uow.charges.find_for_update(target.subscription_id, period.key)
    if ledger is None:
        _require_eligible(target)
        created = uow.charges.create_pending(
            target, period.key, request_id, now, billing_date=period.billing_date
        )
        if created is not None:
            return created
        # A concurrent request inserted the row first: judge what it committed.
        ledger = uow.charges.find_for_update(target.subscription_id, period.key)
    if ledger.state == ChargeState.SUCCEEDED:
        return ChargeResult(ledger)
    if ledger.state == ChargeState.ABANDONED:
        raise errors.ChargeAbandoned(target.subscription_id, period.key)
    _require_eligible(target)
    stale = ledger.state == ChargeState.PENDING and _is_stale(ledger, now, pending_timeout)
    if ledger.state == ChargeState.PENDING and not stale:
        raise errors.ChargeInProgress(target.subscription_id, period.key)
    return uow.charges.begin_attempt(
        ledger.id, _request_id_for_retry(ledger, request_id, stale), target, now
    )


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
        record(ChargeState.UNKNOWN if exc.sent else ChargeState.FAILED, None, None, exc.message)
        raise
    if not (200 <= answer.status < 300 or 400 <= answer.status < 500):
        # The platform may have created the order before failing: reuse the id next time.
        record(ChargeState.UNKNOWN, answer.status, answer.text, None)
        raise errors.PlatformFailed(
            f"the e-commerce platform failed with HTTP {answer.status}",
            platform_status=answer.status,
        )
    state = ChargeState.SUCCEEDED if 200 <= answer.status < 300 else ChargeState.FAILED
    recorded = record(state, answer.status, answer.text, None)
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
    answer = f"HTTP {status}" if status is not None else (error or "no answer")
    with uow:
        recorded = uow.charges.record(ledger, state, status, body, error, now)
        uow.audit.add(
            AuditEntry(
                Action.CHARGE_OUTCOME,
                actor,
                now,
                ledger.subscription_id,
                ledger.period,
                ledger.id,
                ledger.request_id,
                details=f"attempt {ledger.attempts}: {state.value} ({answer})"
                + ("" if recorded else "; the row had already been settled by a newer event"),
            )
        )
        uow.commit()
    return recorded


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
