from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from domain.audit import AuditEntry
from repositories.tables import BillingAudit

# Built once: every charge writes two of these.
_INSERT = insert(BillingAudit.__table__)


class SqlAlchemyAuditRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, entry: AuditEntry) -> None:
        self.connection.execute(
            _INSERT,
            {
                "occurred_at": entry.occurred_at,
                "action": entry.action.value,
                "actor": entry.actor,
                "subscription_id": entry.subscription_id,
                "customer_store_id": entry.customer_id,
                "period": entry.period,
                "charge_id": entry.charge_id,
                "request_id": entry.request_id,
                "details": entry.details,
            },
        )
