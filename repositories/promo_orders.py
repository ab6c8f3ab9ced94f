"""The promo order ledger: one row per reservation, written before calling out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from domain.errors import RequestIdInUse
from domain.promo_model import OrderState, Promo, PromoOrder, Reservation
from repositories.platform_requests import SqlAlchemyPlatformRequestRepository

# The kind of a promo order's request id in the platform_request registry (issue 12).
PROMO_REQUEST_KIND = "promo"

_COLUMNS = (
    "id, reservation_id, promo_id, customer_id, sku, unit_price, request_id, state, attempts,"
    " platform_status, platform_body, error, created_at, updated_at, last_attempt_at"
)

_FOR_RESERVATION = text(f"SELECT {_COLUMNS} FROM promo_order WHERE reservation_id = :id")
_FOR_RESERVATION_LOCKED = text(_FOR_RESERVATION.text + " FOR UPDATE")
# The order that sent this request id, by its current id or any attempt's.
_FOR_REQUEST_ID = text(
    f"SELECT {_COLUMNS} FROM promo_order WHERE request_id = :request_id"
    " OR id IN (SELECT order_id FROM promo_order_attempt WHERE request_id = :request_id)"
    " LIMIT 1"
)

_CREATE = text(
    f"""
    WITH created AS (
        INSERT INTO promo_order (reservation_id, promo_id, customer_id, sku, unit_price,
            request_id, state, attempts, created_at, updated_at, last_attempt_at)
        VALUES (:reservation_id, :promo_id, :customer_id, :sku, :unit_price,
            :request_id, 'pending', 1, :now, :now, :now)
        RETURNING {_COLUMNS}
    ), attempt AS (
        INSERT INTO promo_order_attempt (order_id, attempt, request_id, started_at)
        SELECT id, attempts, request_id, :now FROM created
    )
    SELECT {_COLUMNS} FROM created
    """
)

# The next attempt of an order that is not pending (or whose attempt died): guarded by the
# attempt number the caller read under its lock.
_NEXT_ATTEMPT = text(
    f"""
    WITH updated AS (
        UPDATE promo_order SET state = 'pending', attempts = attempts + 1,
            request_id = :request_id, updated_at = :now, last_attempt_at = :now, error = NULL
        WHERE id = :order_id AND attempts = :attempts AND state <> 'succeeded'
        RETURNING {_COLUMNS}
    ), attempt AS (
        INSERT INTO promo_order_attempt (order_id, attempt, request_id, started_at)
        SELECT id, attempts, request_id, :now FROM updated
    )
    SELECT {_COLUMNS} FROM updated
    """
)

_RECORD = text(
    f"""
    WITH attempt AS (
        UPDATE promo_order_attempt SET finished_at = :now, outcome = :state,
            platform_status = :status
        WHERE order_id = :order_id AND attempt = :attempts
    )
    UPDATE promo_order SET state = :state, platform_status = :status, platform_body = :body,
        error = :error, updated_at = :now
    WHERE id = :order_id AND attempts = :attempts AND state = 'pending'
    RETURNING {_COLUMNS}
    """
)

_LIST = text(
    f"SELECT {_COLUMNS} FROM promo_order"
    " WHERE (CAST(:all AS boolean) OR state IN :states)"
    " ORDER BY created_at, id LIMIT :limit"
).bindparams(bindparam("states", expanding=True))


def _order(row) -> PromoOrder:
    values = row._asdict()
    values["state"] = OrderState(values["state"])
    return PromoOrder(**values)


class SqlAlchemyPromoOrderRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def for_reservation(self, reservation_id: str, *, lock: bool = True) -> PromoOrder | None:
        statement = _FOR_RESERVATION_LOCKED if lock else _FOR_RESERVATION
        row = self.connection.execute(statement, {"id": reservation_id}).first()
        return _order(row) if row else None

    def claim_request_id(
        self,
        reservation: Reservation,
        promo: Promo,
        request_id: str,
        previous: PromoOrder | None,
        now: datetime,
    ) -> PromoOrder:
        """THE one place a promo order's request id is claimed, before calling out.

        A request id is unique in promo_order (a second claim of the same id by another
        reservation fails here, inside the transaction). The id is also registered in the
        shared request-id registry of charges and promo orders (platform_request, kind
        'promo', subject the reservation): a charge can never send a promo's id, nor a
        promo a charge's (RequestIdInUse, 409, nothing called).
        """
        registry = SqlAlchemyPlatformRequestRepository(self.connection)
        if not registry.claim(request_id, PROMO_REQUEST_KIND, reservation.id, now):
            raise RequestIdInUse(request_id)
        if previous is None:
            row = self.connection.execute(
                _CREATE,
                {
                    "reservation_id": reservation.id,
                    "promo_id": promo.id,
                    "customer_id": reservation.customer_id,
                    "sku": promo.sku,
                    "unit_price": promo.unit_price,
                    "request_id": request_id,
                    "now": now,
                },
            ).one()
        else:
            row = self.connection.execute(
                _NEXT_ATTEMPT,
                {
                    "order_id": previous.id,
                    "attempts": previous.attempts,
                    "request_id": request_id,
                    "now": now,
                },
            ).one()
        return _order(row)

    def record(
        self,
        order: PromoOrder,
        state: OrderState,
        status: int | None,
        body: str | None,
        error: str | None,
        now: datetime,
    ) -> PromoOrder | None:
        row = self.connection.execute(
            _RECORD,
            {
                "order_id": order.id,
                "attempts": order.attempts,
                "state": state.value,
                "status": status,
                "body": body,
                "error": error,
                "now": now,
            },
        ).first()
        return _order(row) if row else None

    def find_by_request_id(self, request_id: str) -> PromoOrder | None:
        """The promo order that sent this request id (reconciliation matches orders)."""
        row = self.connection.execute(_FOR_REQUEST_ID, {"request_id": request_id}).first()
        return _order(row) if row else None

    def list_for_reconciliation(
        self, states: Sequence[OrderState] | None = None, limit: int = 1000
    ) -> list[PromoOrder]:
        """Promo orders with their request id and state, oldest first (all, or `states`)."""
        rows = self.connection.execute(
            _LIST,
            {
                "all": not states,
                "states": [s.value for s in states] if states else ["-"],
                "limit": limit,
            },
        )
        return [_order(row) for row in rows]
