"""Reconciliation: the platform's orders against our ledger, daily and on demand.

1. Rows whose outcome we do not know (`unknown`, or `pending` past the pending timeout)
   are settled by asking the platform about their order by request id: paid (succeeded),
   payment failed (a decline), or no order at all (error: retried with the same id, never
   a decline). A platform without such a call leaves them listed for review, not guessed.
2. Where the platform can list its orders, every paid order is matched to its ledger row
   by request id (the registry of request ids sent): a second paid order of one
   (subscription, period) is a double charge; an order we never sent is listed; a paid
   ledger row whose order the platform does not hold is listed.
3. Every open anomaly (double charges, reversals, late payments) is listed until an
   operator resolves it (`resolve`), with what was done (refunded, ...).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain import audit, charges, errors
from domain.audit import Action, AuditEntry
from domain.charges import Charge, ChargeState
from domain.ports import OrderLookup, UnitOfWork

PAID = "charged"
PAYMENT_FAILED = "payment_failed"


@dataclass(frozen=True)
class Finding:
    kind: str
    request_id: str | None
    subscription_id: str | None = None
    period: str | None = None
    charge_id: int | None = None
    detail: str = ""


@dataclass
class Report:
    settled: list[Finding] = field(default_factory=list)
    for_review: list[Finding] = field(default_factory=list)
    double_charges: list[Finding] = field(default_factory=list)
    orders_without_ledger: list[Finding] = field(default_factory=list)
    ledger_without_order: list[Finding] = field(default_factory=list)
    open_anomalies: list[Finding] = field(default_factory=list)
    listed: bool = False

    SECTIONS = (
        "settled",
        "for_review",
        "double_charges",
        "orders_without_ledger",
        "ledger_without_order",
        "open_anomalies",
    )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            name: [asdict(f) for f in getattr(self, name)] for name in self.SECTIONS
        }
        data["platform_listed_orders"] = self.listed
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_table(self) -> str:
        lines = [
            "| section | kind | subscription | period | request id | detail |",
            "|---|---|---|---|---|---|",
        ]
        for name in self.SECTIONS:
            for f in getattr(self, name):
                lines.append(
                    f"| {name} | {f.kind} | {f.subscription_id or ''} | {f.period or ''} "
                    f"| {f.request_id or ''} | {f.detail} |"
                )
        if len(lines) == 2:
            lines.append("| (nothing to report) | | | | | |")
        return "\n".join(lines)

    @property
    def clean(self) -> bool:
        return not any(getattr(self, name) for name in self.SECTIONS[1:])


def _finding(kind: str, row: Charge, detail: str, request_id: str | None = None) -> Finding:
    return Finding(
        kind, request_id or row.request_id, row.subscription_id, row.period, row.id, detail
    )


def reconcile(
    uow: UnitOfWork,
    platform: OrderLookup,
    now: datetime,
    pending_timeout: timedelta,
    since: datetime | None = None,
) -> Report:
    report = Report()
    with uow:
        stale = uow.reconciliation.unsettled(now - pending_timeout)
    for row in stale:
        _settle_row(uow, platform, row, now, report)
    try:
        orders = platform.list_orders()
    except errors.LookupUnsupported:
        orders = None
    except errors.PlatformError as exc:
        orders = None
        report.for_review.append(Finding("listing_failed", None, detail=exc.message))
    if orders is not None:
        report.listed = True
        _match_orders(uow, orders, now, since or now - timedelta(days=45), report)
    with uow:
        for anomaly in uow.reconciliation.open_anomalies():
            report.open_anomalies.append(anomaly)
            if anomaly.kind == "double_charge":
                report.double_charges.append(anomaly)
    return report


def _settle_row(
    uow: UnitOfWork, platform: OrderLookup, row: Charge, now: datetime, report: Report
) -> None:
    try:
        order = platform.find_order(row.request_id)
    except errors.LookupUnsupported:
        report.for_review.append(
            _finding(
                "outcome_unknown", row, f"{row.state.value}: the platform cannot look orders up"
            )
        )
        return
    except errors.PlatformError as exc:
        report.for_review.append(_finding("outcome_unknown", row, exc.message))
        return
    with uow:
        current = uow.charges.find_by_request_id(row.request_id)
        if current is None or (current.state, current.attempts, current.request_id) != (
            row.state,
            row.attempts,
            row.request_id,
        ):
            return  # something else settled it meanwhile
        status = (order or {}).get("status")
        if order is not None and status == PAID:
            charges.mark_paid(uow, current, row.request_id, None, now, audit.RECONCILIATION)
            kind, detail = "paid", "the platform holds the paid order"
        elif order is not None and status == PAYMENT_FAILED:
            uow.charges.transition(
                current, ChargeState.FAILED, now, reason="payment failed (reconciliation)"
            )
            kind, detail = "declined", "the platform holds the order, its payment failed"
        elif order is None:
            uow.charges.transition(
                current,
                ChargeState.ERROR,
                now,
                reason="the platform holds no order (reconciliation)",
            )
            kind, detail = "no_order", "the platform holds no such order: retried with the same id"
        else:
            report.for_review.append(_finding("outcome_unknown", row, f"order status {status!r}"))
            return
        uow.audit.add(
            AuditEntry(
                Action.RECONCILED,
                audit.RECONCILIATION,
                now,
                row.subscription_id,
                row.period,
                row.id,
                row.request_id,
                details=f"{row.state.value} -> {kind}: {detail}",
            )
        )
        uow.commit()
    report.settled.append(_finding(kind, row, detail))


def _match_orders(
    uow: UnitOfWork, orders: list[dict], now: datetime, since: datetime, report: Report
) -> None:
    paid = [o for o in orders if o.get("status") == PAID and o.get("request_id")]
    sent = {o["request_id"] for o in orders if o.get("request_id")}
    for order in paid:
        request_id = order["request_id"]
        with uow:
            row = uow.charges.find_by_request_id(request_id)
            if row is None:
                promo = uow.promo_orders.find_by_request_id(request_id)
                if promo is not None:
                    # A flash-promo order (its own ledger): matched when it is recorded
                    # sold; otherwise the platform's paid order is for review.
                    if promo.state != "succeeded":
                        report.for_review.append(
                            Finding(
                                "promo_order_unsettled",
                                request_id,
                                detail=f"promo order {promo.id} is {promo.state} here, paid"
                                " at the platform",
                            )
                        )
                    continue
                report.orders_without_ledger.append(
                    Finding(
                        "order_without_ledger", request_id, detail=f"order {order.get('order_id')}"
                    )
                )
                continue
            if (
                row.state == ChargeState.SUCCEEDED
                and (row.paid_request_id or row.request_id) == request_id
            ):
                continue
            charges.mark_paid(uow, row, request_id, None, now, audit.RECONCILIATION)
            uow.commit()
    with uow:
        for row in uow.reconciliation.paid_since(since):
            paid_id = row.paid_request_id or row.request_id
            if paid_id not in sent:
                report.ledger_without_order.append(
                    _finding(
                        "ledger_without_order",
                        row,
                        "succeeded, but the platform holds no such order",
                        paid_id,
                    )
                )


def resolve(
    uow: UnitOfWork, anomaly_id: int, resolution: str, operator: str, now: datetime
) -> bool:
    """An operator closes an anomaly with what was done ("refunded order X on ...")."""
    with uow:
        resolved = uow.reconciliation.resolve_anomaly(anomaly_id, resolution, operator, now)
        if resolved is None:
            return False
        uow.audit.add(
            AuditEntry(
                Action.ANOMALY_RESOLVED,
                f"operator:{operator}"[:128],
                now,
                resolved.subscription_id,
                resolved.period,
                resolved.charge_id,
                resolved.request_id,
                details=f"{resolved.kind} resolved: {resolution}",
            )
        )
        uow.commit()
    return True
