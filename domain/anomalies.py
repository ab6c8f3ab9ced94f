"""Money that moved in a way the ledger cannot absorb silently: kept for review, alarmed.

- double_charge: a second order of the same (subscription, period) was paid.
- reversal: the platform reported a failure after the success of the same order.
- paid_after_abandon: an order of a period the run had abandoned was paid after all (the
  subscription may have been cancelled for it: see the runbook in docs/money-path.md).

Each is a row in charge_anomaly, an audit entry, and a call to every listener (the
handlers register one that logs and emits the metric an alarm watches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from domain.audit import Action, AuditEntry

if TYPE_CHECKING:
    from domain.charges import Charge
    from domain.ports import UnitOfWork


class Kind(StrEnum):
    DOUBLE_CHARGE = "double_charge"
    REVERSAL = "reversal"
    PAID_AFTER_ABANDON = "paid_after_abandon"


METRIC = {
    Kind.DOUBLE_CHARGE: "DoubleCharge",  # the DoubleChargeAlarm's metric (serverless.yml)
    Kind.REVERSAL: "ChargeReversal",
    Kind.PAID_AFTER_ABANDON: "ChargePaidAfterAbandon",
}


@dataclass(frozen=True)
class Anomaly:
    kind: Kind
    charge_id: int
    subscription_id: str
    period: str
    request_id: str
    paid_request_id: str | None
    detected_at: datetime
    detected_by: str
    details: str
    event_id: str | None = None


# Called once per newly recorded anomaly (after the row is written, before commit).
listeners: list[Callable[[Anomaly], None]] = []


def record(
    uow: UnitOfWork,
    kind: Kind,
    charge: Charge,
    request_id: str,
    now: datetime,
    actor: str,
    details: str,
    event_id: str | None = None,
) -> bool:
    """Record one anomaly (once per kind, ledger row and request id); True when new."""
    anomaly = Anomaly(
        kind,
        charge.id,
        charge.subscription_id,
        charge.period,
        request_id,
        charge.paid_request_id,
        now,
        actor,
        details,
        event_id,
    )
    if not uow.charges.add_anomaly(anomaly):
        return False
    uow.audit.add(
        AuditEntry(
            Action(kind.value),
            actor,
            now,
            charge.subscription_id,
            charge.period,
            charge.id,
            request_id,
            details=details,
        )
    )
    for listener in listeners:
        listener(anomaly)
    return True
