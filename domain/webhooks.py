"""What the e-commerce platform tells us after a charge, applied to the ledger.

Every event is stored by its unique id first: a replay finds it there and changes
nothing. An event that refers to something we cannot settle yet (a refund of a payment
whose outcome has not arrived) is kept `pending` and applied when its payment-outcome is.

Never trust arrival order. A success for any order of a period marks it paid, and paid
is final: a later failure of the same order is a reversal for review, one dated before
the success is stale, and a second paid order is a double charge (domain/anomalies.py).
A failure reopens the period (a decline) only when it names the period's current
attempt; between failures the later `occurred_at` wins (undated events rank by arrival,
before dated ones).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain import anomalies, audit, charges
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
    actor = audit.webhook(event.event_id)
    request_id = event.request_id or ""
    if event.outcome == "success":
        before = charge.state
        charge = charges.mark_paid(
            uow, charge, request_id, event.occurred_at, now, actor, event.event_id
        )
        note = "" if before != ChargeState.SUCCEEDED else " (the period was already paid)"
        _audit(uow, event, charge, now, Action.PAYMENT_OUTCOME, f"success{note}")
        return
    details = f"failure: {event.reason or 'no reason given'}"
    note = _failure(uow, event, charge, request_id, now, actor)
    _audit(uow, event, charge, now, Action.PAYMENT_OUTCOME, f"{details} ({note})")


def _later(event_at: datetime | None, recorded_at: datetime | None) -> bool:
    """Whether an event ranks after the recorded one: undated events rank by arrival
    (so after an undated one), before every dated one."""
    if event_at is None:
        return recorded_at is None
    return recorded_at is None or event_at > recorded_at


def _failure(
    uow: UnitOfWork,
    event: PlatformEvent,
    charge: Charge,
    request_id: str,
    now: datetime,
    actor: str,
) -> str:
    """Apply a payment failure; returns what it did, for the audit."""
    if charge.state == ChargeState.SUCCEEDED:
        if (charge.paid_request_id or charge.request_id) != request_id:
            return "another order paid the period; ledger left succeeded"
        if (
            event.occurred_at is not None
            and charge.outcome_at is not None
            and (event.occurred_at < charge.outcome_at)
        ):
            return "dated before the success of the same order: stale, ignored"
        anomalies.record(
            uow,
            anomalies.Kind.REVERSAL,
            charge,
            request_id,
            now,
            actor,
            f"the platform reported a failure ({event.reason or 'no reason given'}) after "
            f"order {request_id} had paid {charge.period}: review it, the period stays paid",
            event.event_id,
        )
        return "reversal of a paid order: recorded for review, ledger left succeeded"
    if charge.state == ChargeState.ABANDONED:
        return "the period is closed; ledger left abandoned"
    if charge.request_id != request_id:
        return f"not the current attempt ({charge.request_id}); ledger left {charge.state}"
    if event.occurred_at is not None and event.occurred_at < charge.last_attempt_at:
        # Dated before the current attempt was sent: it cannot be about this attempt.
        return "dated before the current attempt was sent: stale, ignored"
    if charge.state == ChargeState.FAILED and not _later(event.occurred_at, charge.outcome_at):
        return "an older failure than the one recorded; ledger left failed"
    reason = f"payment failed: {event.reason or 'no reason given'}"[:500]
    # The period becomes chargeable again; the billing run retries it inside its window.
    moved = uow.charges.transition(
        charge, ChargeState.FAILED, now, reason=reason, outcome_at=event.occurred_at
    )
    if moved is None:
        again = uow.charges.find_by_request_id(request_id)
        return _failure(uow, event, again, request_id, now, actor)
    return "declined: the period is chargeable again inside its retry window"


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
