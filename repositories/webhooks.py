from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from domain.charges import Charge
from domain.webhooks import PlatformEvent
from repositories.tables import ChargeRefund, WebhookEvent


def _amount(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value is not None else None
    except InvalidOperation:
        return None


class SqlAlchemyWebhookRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, event: PlatformEvent, now: datetime) -> bool:
        """Store a new event as pending; False when its id was received before."""
        inserted = self.connection.execute(
            pg_insert(WebhookEvent)
            .values(
                event_id=event.event_id,
                type=event.type.value,
                request_id=event.request_id,
                customer_store_id=event.customer_id,
                payload=event.to_dict(),
                state="pending",
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(WebhookEvent.event_id)
        ).first()
        return inserted is not None

    def mark_applied(self, event_id: str, now: datetime) -> None:
        self.connection.execute(
            update(WebhookEvent)
            .where(WebhookEvent.event_id == event_id)
            .values(state="applied", applied_at=now)
        )

    def pending_for(self, request_id: str) -> list[PlatformEvent]:
        rows = self.connection.scalars(
            select(WebhookEvent.payload)
            .where(WebhookEvent.state == "pending", WebhookEvent.request_id == request_id)
            .order_by(WebhookEvent.received_at, WebhookEvent.event_id)
            .with_for_update()
        )
        return [PlatformEvent.from_dict(payload) for payload in rows]

    def add_refund(self, charge: Charge, event: PlatformEvent, now: datetime) -> None:
        self.connection.execute(
            insert(ChargeRefund).values(
                charge_id=charge.id,
                event_id=event.event_id,
                request_id=event.request_id,
                amount=_amount(event.amount),
                reason=event.reason,
                refunded_at=event.occurred_at,
                recorded_at=now,
            )
        )
