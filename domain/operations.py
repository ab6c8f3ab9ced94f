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

from domain import billing, charges, errors
from domain.audit import AuditEntry
from domain.charges import ChargeResult, ChargeState
from domain.model import ClubStatus
from domain.ports import Ecommerce, UnitOfWork


class OperatorAction(StrEnum):
    CLUB_CREATED = "club_created"
    CLUB_STATUS = "club_status"
    OPERATOR_CHARGE = "operator_charge"


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
