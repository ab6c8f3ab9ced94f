"""What the operators' desk reads (the views of revision 0010) and writes (club history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from domain.model import new_id


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]


class SqlAlchemyOperationsRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _at(self, at: datetime | None) -> None:
        """Show the views at `at` for the rest of this transaction (None: now)."""
        if at is not None:
            self.connection.execute(
                text("SELECT set_config('ops.at', :at, true)"), {"at": at.isoformat(sep=" ")}
            )

    def clubs(self, at: datetime | None = None) -> list[dict[str, Any]]:
        self._at(at)
        return _rows(self.connection.execute(text("SELECT * FROM club_now ORDER BY club_id")))

    def club(self, club_id: int, at: datetime | None = None) -> dict[str, Any] | None:
        self._at(at)
        rows = _rows(
            self.connection.execute(
                text("SELECT * FROM club_now WHERE club_id = :id"), {"id": club_id}
            )
        )
        return rows[0] if rows else None

    def create_club(self, name: str, sku: int | None) -> int:
        return self.connection.scalar(
            text("INSERT INTO club (name, store_sku) VALUES (:name, :sku) RETURNING id"),
            {"name": name, "sku": sku},
        )

    def add_club_status(
        self, club_id: int, status_id: int, effect: datetime, now: datetime, details: str
    ) -> str:
        history_id = new_id()
        self.connection.execute(
            text(
                "INSERT INTO club_status_history"
                " (id, club_id, club_status_id, effect_date, create_date, details)"
                " VALUES (:id, :club_id, :status_id, :effect, :now, :details)"
            ),
            {
                "id": history_id,
                "club_id": club_id,
                "status_id": status_id,
                "effect": effect,
                "now": now,
                "details": details[:256],
            },
        )
        return history_id

    def members(self, key: str, at: datetime | None = None) -> list[dict[str, Any]]:
        """subscription_now rows of the subscription with this id, or of the customer's."""
        self._at(at)
        return _rows(
            self.connection.execute(
                text(
                    "SELECT * FROM subscription_now WHERE subscription_id = :key"
                    " UNION ALL SELECT * FROM subscription_now"
                    " WHERE customer_store_id = :key AND subscription_id <> :key"
                    " ORDER BY subscription_id"
                ),
                {"key": key},
            )
        )

    def timeline(self, subscription_id: str, at: datetime | None = None) -> list[dict[str, Any]]:
        self._at(at)
        return _rows(
            self.connection.execute(
                text(
                    "SELECT at, recorded_at, kind, what, period, details, ref"
                    " FROM member_timeline WHERE subscription_id = :id"
                    " ORDER BY at NULLS LAST, recorded_at NULLS LAST, kind_order, ref"
                ),
                {"id": subscription_id},
            )
        )

    def current_status(self, subscription_id: str, at: datetime) -> tuple[int, str | None] | None:
        """(status id, details) of the subscription's counting history row at `at` (the
        current-status rule); None without one."""
        row = self.connection.execute(
            text(
                "SELECT status_id, details FROM subscription_status_history"
                " WHERE subscription_id = :s AND effect_date <= :at"
                " ORDER BY effect_date DESC, create_date DESC NULLS LAST, id DESC LIMIT 1"
            ),
            {"s": subscription_id, "at": at},
        ).first()
        return (row.status_id, row.details) if row else None
