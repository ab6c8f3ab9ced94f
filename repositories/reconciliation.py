"""What reconciliation reads: rows whose outcome is unknown, paid rows, open anomalies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection

from domain.charges import Charge
from domain.reconciliation import Finding
from repositories.charges import _ROW, _charge
from repositories.tables import Charge as ChargeRow
from repositories.tables import ChargeAnomaly


def _anomaly(row) -> Finding:
    return Finding(
        row.kind,
        row.request_id,
        row.subscription_id,
        row.period,
        row.charge_id,
        f"#{row.id} paid by {row.paid_request_id}: {row.details}",
    )


class SqlAlchemyReconciliationRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def unsettled(self, stale_before: datetime) -> list[Charge]:
        rows = self.connection.execute(
            select(*_ROW)
            .where(
                or_(
                    ChargeRow.state == "unknown",
                    (ChargeRow.state == "pending") & (ChargeRow.last_attempt_at <= stale_before),
                )
            )
            .order_by(ChargeRow.id)
        )
        return [_charge(row) for row in rows]

    def paid_since(self, since: datetime) -> list[Charge]:
        rows = self.connection.execute(
            select(*_ROW)
            .where(ChargeRow.state == "succeeded", ChargeRow.updated_at >= since)
            .order_by(ChargeRow.id)
        )
        return [_charge(row) for row in rows]

    def open_anomalies(self) -> list[Finding]:
        rows = self.connection.execute(
            select(ChargeAnomaly)
            .where(ChargeAnomaly.resolved_at.is_(None))
            .order_by(ChargeAnomaly.id)
        )
        return [_anomaly(row) for row in rows]

    def resolve_anomaly(self, anomaly_id: int, resolution: str, operator: str, now: datetime):
        return self.connection.execute(
            update(ChargeAnomaly)
            .where(ChargeAnomaly.id == anomaly_id, ChargeAnomaly.resolved_at.is_(None))
            .values(resolved_at=now, resolution=f"{resolution} (by {operator})")
            .returning(ChargeAnomaly)
        ).first()
