"""Announcing promos: which to announce, their audience, and one notification per customer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection

from domain import geo
from domain.promo_model import Promo
from repositories import promo_geo
from repositories.promos import PROMO_SELECT, promo_from_row

_RUNNING = "p.cancelled_at IS NULL AND p.starts_at <= :now AND p.ends_at > :now"
_TO_ANNOUNCE = text(
    "SELECT p.id FROM promo p"
    f" WHERE p.announced_at IS NULL AND {_RUNNING} ORDER BY p.starts_at, p.id"
)
# Re-checked under the lock; SKIP LOCKED: a promo another announcer is at is left to it.
# NO KEY UPDATE: reservations and notifications (foreign keys to it) go on meanwhile.
_LOCK_FOR_ANNOUNCEMENT = text(
    PROMO_SELECT + f" WHERE p.id = :promo_id AND p.announced_at IS NULL AND {_RUNNING}"
    " FOR NO KEY UPDATE OF p SKIP LOCKED"
)
_RUNNING_PROMO = text(PROMO_SELECT + f" WHERE p.id = :promo_id AND {_RUNNING}")
_MARK_ANNOUNCED = text(
    "UPDATE promo SET announced_at = :now WHERE id = :promo_id AND announced_at IS NULL"
)

_DISTANCE = promo_geo.haversine(":lat", ":lon", "c.latitude", "c.longitude")
# The ids come out `:per_row` to a row (one queue message each): the server-side cursor
# streams a few hundred arrays instead of tens of thousands of rows through the driver.
_AUDIENCE = text(
    f"""
    SELECT array_agg(customer_id) FROM (
        SELECT c.customer_id, (row_number() OVER () - 1) / :per_row AS part
        FROM customer_profile c
        WHERE {promo_geo.in_box("c.latitude", "c.longitude")}
          AND (CAST(:everyone AS boolean) OR c.segments && CAST(:segments AS text[]))
          AND {_DISTANCE} <= :radius_km
    ) AS audience
    GROUP BY part
    """
)

# Recorded before sending: a row already sent, or claimed by a sender within the lease,
# is not returned, so a duplicate delivery sends nothing.
_CLAIM = text(
    """
    INSERT INTO promo_notification AS n (promo_id, customer_id, claimed_at)
    SELECT :promo_id, id, :now FROM unnest(CAST(:ids AS varchar[])) AS id
    ON CONFLICT (promo_id, customer_id) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
        WHERE n.sent_at IS NULL AND n.claimed_at <= :lease_cutoff
    RETURNING n.customer_id
    """
)
_MARK_SENT = text(
    """
    UPDATE promo_notification AS n SET sent_at = :now, message_id = sent.message_id
    FROM unnest(CAST(:ids AS varchar[]), CAST(:message_ids AS varchar[]))
        AS sent(customer_id, message_id)
    WHERE n.promo_id = :promo_id AND n.customer_id = sent.customer_id
    """
)
_RELEASE = text(
    "UPDATE promo_notification SET claimed_at = '-infinity'"
    " WHERE promo_id = :promo_id AND customer_id = ANY(CAST(:ids AS varchar[]))"
    " AND sent_at IS NULL"
)


class SqlAlchemyPromoNotificationRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def to_announce(self, now: datetime) -> list[int]:
        return list(self.connection.execute(_TO_ANNOUNCE, {"now": now}).scalars())

    def lock_for_announcement(self, promo_id: int, now: datetime) -> Promo | None:
        row = self.connection.execute(
            _LOCK_FOR_ANNOUNCEMENT, {"promo_id": promo_id, "now": now}
        ).first()
        return promo_from_row(row) if row else None

    def running(self, promo_id: int, now: datetime) -> Promo | None:
        row = self.connection.execute(_RUNNING_PROMO, {"promo_id": promo_id, "now": now}).first()
        return promo_from_row(row) if row else None

    def audience(self, promo: Promo, chunk: int) -> Iterator[list[str]]:
        """Lists of at most `chunk` customer ids (a queue message's worth each)."""
        box = geo.box_around(promo.store_latitude, promo.store_longitude, promo.radius_km)
        result = self.connection.execute(
            _AUDIENCE,
            {
                **box.params(),
                "lat": promo.store_latitude,
                "lon": promo.store_longitude,
                "radius_km": promo.radius_km + geo.TOLERANCE_KM,
                "everyone": not promo.segments,
                "segments": list(promo.segments),
                "per_row": chunk,
            },
            # A server-side cursor: the audience is never held in this process whole.
            execution_options={"stream_results": True, "max_row_buffer": 50},
        )
        for (ids,) in result:
            yield ids

    def mark_announced(self, promo_id: int, now: datetime) -> None:
        self.connection.execute(_MARK_ANNOUNCED, {"promo_id": promo_id, "now": now})

    def claim(
        self, promo_id: int, customer_ids: Sequence[str], now: datetime, lease_seconds: int
    ) -> list[str]:
        unique = list(dict.fromkeys(customer_ids))
        rows = self.connection.execute(
            _CLAIM,
            {
                "promo_id": promo_id,
                "ids": unique,
                "now": now,
                "lease_cutoff": now - timedelta(seconds=lease_seconds),
            },
        )
        return [row[0] for row in rows]

    def mark_sent(self, promo_id: int, sent: dict[str, str], now: datetime) -> None:
        if sent:
            self.connection.execute(
                _MARK_SENT,
                {
                    "promo_id": promo_id,
                    "ids": list(sent),
                    "message_ids": list(sent.values()),
                    "now": now,
                },
            )

    def release(self, promo_id: int, customer_ids: Sequence[str]) -> None:
        """Claims whose send failed: the next delivery takes them at once."""
        if customer_ids:
            self.connection.execute(_RELEASE, {"promo_id": promo_id, "ids": list(customer_ids)})
