"""The append-only record of every money-related change, and who or what caused it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Action(StrEnum):
    CHARGE_ATTEMPT = "charge_attempt"
    CHARGE_OUTCOME = "charge_outcome"
    PAYMENT_OUTCOME = "payment_outcome"
    REFUND = "refund"
    CARD_UNAVAILABLE = "card_unavailable"
    CANCELLATION = "cancellation"
    ABANDONED = "abandoned"
    # Club changes (domain/club_changes.py).
    CLUB_CHANGE_SCHEDULED = "club_change_scheduled"
    CLUB_CHANGE_APPLIED = "club_change_applied"
    CLUB_CHANGE_CANCELLED = "club_change_cancelled"

    DOUBLE_CHARGE = "double_charge"
    REVERSAL = "reversal"
    PAID_AFTER_ABANDON = "paid_after_abandon"
    CARD_CLEARED = "card_cleared"
    CANCELLATION_HELD = "cancellation_held"
    CANCELLATION_RELEASED = "cancellation_released"
    RECONCILED = "reconciled"
    ANOMALY_RESOLVED = "anomaly_resolved"


# Who caused a change: the charge endpoint (its caller), the billing run, or the platform.
CHARGE_ENDPOINT = "charge-endpoint"
BILLING_RUN = "billing-run"
# Club changes: their endpoint, a status change that cancelled one, the eligible absorber.
CLUB_CHANGE_ENDPOINT = "club-change-endpoint"
STATUS_CHANGE = "status-change"
ABSORBER = "absorber"

RECONCILIATION = "reconciliation"


def webhook(event_id: str) -> str:
    return f"webhook:{event_id}"[:128]


@dataclass(frozen=True)
class AuditEntry:
    action: Action
    actor: str
    occurred_at: datetime
    subscription_id: str | None = None
    period: str | None = None
    charge_id: int | None = None
    request_id: str | None = None
    customer_id: str | None = None
    details: str | None = None
