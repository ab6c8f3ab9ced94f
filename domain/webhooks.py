"""What the e-commerce platform tells us after a charge, applied to the ledger.

Every event is stored by its unique id first: a replay finds it there and changes
nothing. An event that refers to something we cannot settle yet (a refund of a payment
whose outcome has not arrived) is kept `pending` and applied when its payment-outcome is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain import audit
from domain.audit import Action, AuditEntry
from domain.billing import CardReport
from domain.charges import Charge, ChargeState
from domain.ports import UnitOfWork


class EventType(StrEnum):
    PAYMENT_OUTCOME = "payment-outcome"
    REFUND = "refund"
    CARD_UNAVAILABLE = "card-unavailable"


class Receipt(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class PlatformEvent:
    event_id: str
    type: EventType
    request_id: str | None = None
    customer_id: str | None = None
    outcome: str | None = None
    reason: str | None = None
    amount: str | None = None
    occurred_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        data["occurred_at"] = self.occurred_at.isoformat() if self.occurred_at else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlatformEvent:
        values = dict(data)
        values["type"] = EventType(values["type"])
        if values.get("occurred_at"):
            values["occurred_at"] = datetime.fromisoformat(values["occurred_at"])
        return cls(**values)


def receive(uow: UnitOfWork, event: PlatformEvent, now: datetime) -> Receipt:
    with uow:
        if not uow.webhooks.add(event, now):
            return Receipt.DUPLICATE
        applied = _apply(uow, event, now)
        if applied:
            uow.webhooks.mark_applied(event.event_id, now)
            if event.type == EventType.PAYMENT_OUTCOME and event.request_id:
                for waiting in uow.webhooks.pending_for(event.request_id):
                    if _apply(uow, waiting, now):
                        uow.webhooks.mark_applied(waiting.event_id, now)
        uow.commit()
    return Receipt.APPLIED if applied else Receipt.PENDING


def _apply(uow: UnitOfWork, event: PlatformEvent, now: datetime) -> bool:
    if event.type == EventType.CARD_UNAVAILABLE:
        return _card_unavailable(uow, event, now)
    charge = uow.charges.find_by_request_id(event.request_id or "")
    if charge is None:
        return False
    if event.type == EventType.PAYMENT_OUTCOME:
        _payment_outcome(uow, event, charge, now)
        return True
    # A refund of a payment not known to have succeeded waits for its payment-outcome.
    if charge.state != ChargeState.SUCCEEDED:
        return False
    uow.webhooks.add_refund(charge, event, now)
    _audit(uow, event, charge, now, Action.REFUND, _refund_details(event))
    return True


def _payment_outcome(uow: UnitOfWork, event: PlatformEvent, charge: Charge, now: datetime):
    success = event.outcome == "success"
    details = "success" if success else f"failure: {event.reason or 'no reason given'}"
    superseded = event.request_id != charge.request_id and charge.state == ChargeState.SUCCEEDED
    if charge.state == ChargeState.ABANDONED or (superseded and not success):
        # The period is closed, or a newer attempt already succeeded: record, change nothing.
        details += f" (ledger left {charge.state.value})"
    elif success:
        charge = uow.charges.settle(charge.id, ChargeState.SUCCEEDED, None, now)
    else:
        # The period becomes chargeable again; the billing run retries it inside its window.
        reason = f"payment failed: {event.reason or 'no reason given'}"[:500]
        charge = uow.charges.settle(charge.id, ChargeState.FAILED, reason, now)
    _audit(uow, event, charge, now, Action.PAYMENT_OUTCOME, details)


def _card_unavailable(uow: UnitOfWork, event: PlatformEvent, now: datetime) -> bool:
    report = CardReport(event.customer_id or "", event.reason or "unavailable", now)
    uow.billing.report_card_unavailable(report, event.event_id)
    uow.audit.add(
        AuditEntry(
            Action.CARD_UNAVAILABLE,
            audit.webhook(event.event_id),
            now,
            customer_id=event.customer_id,
            details=f"card {report.reason}: the customer's subscriptions are cancelled "
            "at their next billing",
        )
    )
    return True


def _refund_details(event: PlatformEvent) -> str:
    amount = f"{event.amount} " if event.amount is not None else ""
    return f"refund {amount}: {event.reason or 'no reason given'}".replace(" :", ":")


def _audit(
    uow: UnitOfWork,
    event: PlatformEvent,
    charge: Charge,
    now: datetime,
    action: Action,
    details: str,
) -> None:
    uow.audit.add(
        AuditEntry(
            action,
            audit.webhook(event.event_id),
            now,
            charge.subscription_id,
            charge.period,
            charge.id,
            event.request_id,
            details=details,
        )
    )
