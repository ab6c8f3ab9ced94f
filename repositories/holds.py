"""Cancellations the billing run's breaker held back, until an operator releases them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

_HOLD = text(
    """
    INSERT INTO billing_hold (subscription_id, period, reason, held_at)
    VALUES (:subscription_id, :period, :reason, :now)
    ON CONFLICT (subscription_id, period) WHERE released_at IS NULL
    DO UPDATE SET held_at = EXCLUDED.held_at, reason = EXCLUDED.reason
    RETURNING (xmax = 0) AS inserted
    """
)
_OPEN = text(
    "SELECT subscription_id, period, reason FROM billing_hold WHERE released_at IS NULL ORDER BY id"
)
_RELEASE = text(
    """
    UPDATE billing_hold SET released_at = :now, released_by = :operator
    WHERE released_at IS NULL
    RETURNING subscription_id, period, reason
    """
)


_HELD_AT = text("SELECT EXISTS (SELECT 1 FROM billing_hold WHERE held_at = :at)")


class SqlAlchemyHoldRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def hold(self, subscription_id: str, period: str, reason: str, now: datetime) -> bool:
        """Hold one cancellation, dated `now`; False when it was already held (its date
        moves to `now`: the latest run that held it)."""
        params = {"subscription_id": subscription_id, "period": period, "reason": reason}
        return bool(self.connection.execute(_HOLD, {**params, "now": now}).scalar())

    def open(self) -> list[tuple[str, str, str | None]]:
        return [tuple(row) for row in self.connection.execute(_OPEN)]

    def release(self, now: datetime, operator: str) -> list[tuple[str, str, str | None]]:
        rows = self.connection.execute(_RELEASE, {"now": now, "operator": operator[:128]})
        return sorted((tuple(row) for row in rows), key=lambda r: (r[0], r[1]))

    def held_at(self, at: datetime) -> bool:
        """Whether a run planned at `at` held cancellations (released since or not; a hold
        held again by a later run carries the later date)."""
        return bool(self.connection.execute(_HELD_AT, {"at": at}).scalar())
