"""What operators do from the desk (`python -m ops`), each write audited with their name.

Thin on purpose: a club's status is a history row like the README's SQL writes, and
"charge a period now" is `charges.charge` with the request id the billing run would use
for that period, so a later run or a retried call can never charge it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain import (
    billing,
    cancellation_breaker,
    charges,
    errors,
    reconciliation,
    settlement,
    subscriptions,
)
from domain.audit import AuditEntry
from domain.charges import ChargeResult, ChargeState
from domain.model import ClubStatus, SubscriptionStatus
from domain.ports import Ecommerce, UnitOfWork


class OperatorAction(StrEnum):
    CLUB_CREATED = "club_created"
    CLUB_STATUS = "club_status"
    OPERATOR_CHARGE = "operator_charge"
    # The money path's desk actions (issue 12's domain, issue 16's CLI).
    RECONCILE = "operator_reconcile"
    WAIVED = "waived"
    CANCELLATION_UNDONE = "cancellation_undone"


def actor(operator: str) -> str:
    return f"operator:{operator}"[:128]


def clubs(uow: UnitOfWork, at: datetime | None = None) -> list[dict[str, Any]]:
    with uow:
        return uow.operations.clubs(at)


def create_club(uow: UnitOfWork, name: str, sku: int | None, operator: str, now: datetime) -> int:
    with uow:
        club_id = uow.operations.create_club(name, sku)
        uow.audit.add(
            AuditEntry(
                OperatorAction.CLUB_CREATED,
                actor(operator),
                now,
                details=f"club {club_id} {name!r} created with SKU {sku}",
            )
        )
        uow.commit()
    return club_id


def change_club_status(
    uow: UnitOfWork,
    club_id: int,
    status: ClubStatus,
    operator: str,
    now: datetime,
    effect: datetime | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """Append a club status history row (effective `effect`, default now); the club's
    row as it is now comes back (a future change shows as its next change)."""
    effect = effect or now
    text = (
        details
        or {
            ClubStatus.ACTIVE: "opened",
            ClubStatus.CLOSED: "closed to new members",
            ClubStatus.INACTIVE: "deactivated",
        }[status]
    )
    with uow:
        if not uow.clubs.exists(club_id):
            raise errors.ClubNotFound(club_id)
        history_id = uow.operations.add_club_status(
            club_id, status, effect, now, f"{text} (by {operator})"
        )
        uow.audit.add(
            AuditEntry(
                OperatorAction.CLUB_STATUS,
                actor(operator),
                now,
                details=f"club {club_id} {status.name} from {effect:%Y-%m-%d %H:%M}: {text}"
                f" (history row {history_id})",
            )
        )
        uow.commit()
    with uow:
        return uow.operations.club(club_id, now)


def member(uow: UnitOfWork, key: str, at: datetime | None = None) -> list[dict[str, Any]]:
    """The subscription with this id, or the customer's subscriptions, each with its
    timeline."""
    with uow:
        found = uow.operations.members(key, at)
        if not found:
            raise errors.SubscriptionNotFound(key)
        for row in found:
            row["timeline"] = uow.operations.timeline(row["subscription_id"], at)
    return found


def charge_now(
    uow: UnitOfWork,
    platform: Ecommerce,
    subscription_id: str,
    operator: str,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
) -> ChargeResult:
    """Charge the subscription's current period now, as the run would (same request id)."""
    now = clock()
    with uow:
        target = uow.charges.target(subscription_id, now)
        if target is None:
            raise errors.SubscriptionNotFound(subscription_id)
        period = target.period(now)
        if period is None:
            raise errors.NothingToDo(
                f"subscription {subscription_id} has no billable period now (its club's"
                " billing schedule is switching over)"
            )
        ledger = uow.charges.find_for_update(subscription_id, period.key)
    failed = ledger.attempts if ledger is not None and ledger.state == ChargeState.FAILED else 0
    request_id = billing.request_id_for(subscription_id, period.key, failed)
    result = charges.charge(
        uow, platform, subscription_id, request_id, clock, pending_timeout, actor(operator)
    )
    with uow:
        answer = "replayed" if result.replayed else f"HTTP {result.answer.status}"
        uow.audit.add(
            AuditEntry(
                OperatorAction.OPERATOR_CHARGE,
                actor(operator),
                clock(),
                subscription_id,
                result.charge.period,
                result.charge.id,
                result.charge.request_id,
                details=f"charged now by an operator: {result.charge.state.value} ({answer})",
            )
        )
        uow.commit()
    return result


# --- the money path's desk actions: thin calls to domain.billing / domain.reconciliation ---


def reconcile(
    uow: UnitOfWork,
    platform: Ecommerce,
    operator: str,
    now: datetime,
    pending_timeout: timedelta,
) -> reconciliation.Report:
    """`reconciliation.reconcile` run by an operator (each settlement is audited by it;
    the run itself is audited with the operator's name)."""
    report = reconciliation.reconcile(uow, platform, now, pending_timeout)
    with uow:
        uow.audit.add(
            AuditEntry(
                OperatorAction.RECONCILE,
                actor(operator),
                now,
                details=f"reconciliation run by an operator: {len(report.settled)} settled,"
                f" {len(report.double_charges)} double charge(s),"
                f" {len(report.for_review)} for review",
            )
        )
        uow.commit()
    return report


def resolve_anomaly(
    uow: UnitOfWork, anomaly_id: int, note: str, operator: str, now: datetime
) -> bool:
    """`reconciliation.resolve` (audited with the operator's name by it)."""
    return reconciliation.resolve(uow, anomaly_id, note, operator, now)


def release_cancellations(
    new_uow: Callable[[], UnitOfWork],
    platform: Callable[[], Ecommerce],
    operator: str,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
    retry_window: timedelta,
) -> list[tuple[billing.BillingMessage, billing.Outcome]]:
    """`cancellation_breaker.release_held` (audited with the operator's name), then each released
    cancellation carried out by the worker's own rules (`settlement.settle` re-reads the
    ledger row under lock: only a period still declined past its window, or a card report
    still standing, cancels anyone).

    `platform` builds the client, only when something was released: with nothing held
    this needs no platform settings."""
    released = cancellation_breaker.release_held(new_uow(), clock(), operator)
    if not released:
        return []
    client = platform()
    done = []
    for message in released:
        outcome = settlement.settle_message(
            new_uow(), client, message, clock, pending_timeout, retry_window
        )
        done.append((message, outcome))
    return done


# States a waive may close: a decline, or platform failures. Never unknown or pending
# (the platform may have taken the order: reconciliation settles those first) nor paid.
WAIVABLE = frozenset({ChargeState.FAILED, ChargeState.ERROR})


def waive(
    uow: UnitOfWork, subscription_id: str, period: str, reason: str, operator: str, now: datetime
) -> Any:
    """Close an unpaid period without cancelling anyone (state abandoned, reason "waived
    by operator"), with the guarded transition of the money path; audited. The billing run
    never charges, retries or cancels for an abandoned period."""
    with uow:
        row = uow.charges.find_for_update(subscription_id, period)
        if row is None:
            raise errors.NothingToDo(
                f"subscription {subscription_id} has no ledger row for {period}: nothing to"
                " waive (a period not yet charged is charged by the run)"
            )
        if row.state not in WAIVABLE:
            raise errors.NothingToDo(
                f"period {period} of subscription {subscription_id} is {row.state.value}:"
                " only a failed (declined) or error period is waived"
                + (" (reconcile it first)" if row.state.value in ("unknown", "pending") else "")
            )
        closed = uow.charges.transition(
            row, ChargeState.ABANDONED, now, reason=f"waived by {operator}: {reason}"[:256]
        )
        if closed is None:
            raise errors.NothingToDo(f"period {period} moved meanwhile; look again")
        uow.audit.add(
            AuditEntry(
                OperatorAction.WAIVED,
                actor(operator),
                now,
                subscription_id,
                period,
                row.id,
                row.request_id,
                details=f"period waived without cancelling anyone after {row.attempts}"
                f" attempt(s) ({row.state.value}): {reason}",
            )
        )
        uow.commit()
    return closed


BILLING_CANCELLATION = "Cancelled by billing"


def undo_cancellation(
    uow: UnitOfWork, subscription_id: str, reason: str, operator: str, now: datetime
) -> Any:
    """Restore a subscription the billing run cancelled: an ACTIVE history row effective
    now (through `subscriptions.change_status`, so scheduled rows are superseded as any
    status change does), audited. Refused unless its current status is CANCELLED by
    billing (a member's own cancellation is theirs to undo). The period billing gave up
    on stays abandoned: the run charges the periods from now on."""
    with uow:
        current = uow.operations.current_status(subscription_id, now)
    if current is None:
        raise errors.SubscriptionNotFound(subscription_id)
    status_id, details = current
    if status_id != SubscriptionStatus.CANCELLED or not (details or "").startswith(
        BILLING_CANCELLATION
    ):
        raise errors.NothingToDo(
            f"subscription {subscription_id} is not cancelled by billing now; nothing to undo"
        )

    def audited(tx: UnitOfWork) -> None:
        tx.audit.add(
            AuditEntry(
                OperatorAction.CANCELLATION_UNDONE,
                actor(operator),
                now,
                subscription_id,
                details=f"cancellation by billing undone ({details}): {reason}"[:1000],
            )
        )

    return subscriptions.change_status(
        uow,
        subscription_id,
        SubscriptionStatus.ACTIVE,
        now,
        details=f"restored by {operator}: {reason}"[:256],
        also=audited,
    )
