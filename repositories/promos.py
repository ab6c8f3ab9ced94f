"""Stores, customer profiles, promos, their units and reservations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from domain import geo
from domain.promo_model import EligiblePromo, Profile, Promo, Reservation, ReservationState
from repositories import promo_geo

_PROMO_COLUMNS = """
    p.id, p.store_id, s.name, s.latitude, s.longitude, p.sku, p.unit_price, p.units,
    p.segments, p.radius_km, p.starts_at, p.ends_at, p.cancelled_at, p.announced_at
"""
PROMO_SELECT = f"SELECT {_PROMO_COLUMNS} FROM promo p JOIN store s ON s.id = p.store_id"

_PROFILE = text(
    "SELECT customer_id, latitude, longitude, segments FROM customer_profile"
    " WHERE customer_id = :customer_id"
)
_PROFILE_LOCKED = text(_PROFILE.text + " FOR UPDATE")
_PROMO = text(PROMO_SELECT + " WHERE p.id = :promo_id")

_DISTANCE = promo_geo.haversine(":lat", ":lon", "s.latitude", "s.longitude")
# A unit is free when unsold and its hold has passed; units beyond `units` (lowered by an
# operator) are never offered.
_FREE_UNIT = (
    "u.sold_at IS NULL AND (u.held_until IS NULL OR u.held_until <= :now) AND u.unit_no <= p.units"
)

# The running promos near the customer: stores in the box of the largest radius, the exact
# distance, then each promo's own radius, segments, units and the customer's own hold.
_ELIGIBLE = text(
    f"""
    SELECT p.id, p.store_id, s.name, p.sku, p.unit_price, d.km, p.ends_at,
        (SELECT count(*) FROM promo_unit u WHERE u.promo_id = p.id AND {_FREE_UNIT}) AS units_left,
        mine.id, mine.state, mine.expires_at, mine.owns
    FROM store s
    JOIN promo p ON p.store_id = s.id
    CROSS JOIN LATERAL (SELECT {_DISTANCE} AS km) d
    LEFT JOIN LATERAL (
        SELECT r.id, r.state, r.expires_at,
            EXISTS (SELECT 1 FROM promo_unit u WHERE u.promo_id = r.promo_id
                    AND u.unit_no = r.unit_no AND u.reservation_id = r.id) AS owns
        FROM promo_reservation r
        WHERE r.promo_id = p.id AND r.customer_id = :customer_id
        ORDER BY r.created_at DESC LIMIT 1
    ) mine ON true
    WHERE {promo_geo.in_box("s.latitude", "s.longitude")}
      AND p.cancelled_at IS NULL AND p.starts_at <= :now AND p.ends_at > :now
      AND (cardinality(p.segments) = 0 OR p.segments && CAST(:segments AS text[]))
      AND d.km <= p.radius_km + {geo.TOLERANCE_KM}
      AND (mine.state IS NULL OR mine.state <> 'sold')
    ORDER BY d.km, p.ends_at, p.id
    """
)

# Take one free unit: the first that nobody else is taking right now (SKIP LOCKED), in one
# guarded UPDATE that re-checks it is free.
_TAKE_UNIT = text(
    f"""
    UPDATE promo_unit AS t SET reservation_id = :reservation_id, held_until = :until
    FROM (
        SELECT u.promo_id, u.unit_no FROM promo_unit u JOIN promo p ON p.id = u.promo_id
        WHERE u.promo_id = :promo_id AND {_FREE_UNIT}
        ORDER BY u.unit_no LIMIT 1
        FOR UPDATE OF u SKIP LOCKED
    ) AS free
    WHERE t.promo_id = free.promo_id AND t.unit_no = free.unit_no
      AND t.sold_at IS NULL AND (t.held_until IS NULL OR t.held_until <= :now)
    RETURNING t.unit_no
    """
)

_RESERVATION_COLUMNS = """
    r.id, r.promo_id, r.customer_id, r.unit_no, r.state, r.created_at, r.expires_at,
    r.updated_at,
    EXISTS (SELECT 1 FROM promo_unit u WHERE u.promo_id = r.promo_id AND u.unit_no = r.unit_no
            AND u.reservation_id = r.id) AS owns
"""
_LATEST = text(
    f"SELECT {_RESERVATION_COLUMNS} FROM promo_reservation r"
    " WHERE r.promo_id = :promo_id AND r.customer_id = :customer_id"
    " ORDER BY r.created_at DESC LIMIT 1"
)
_RESERVATION = text(f"SELECT {_RESERVATION_COLUMNS} FROM promo_reservation r WHERE r.id = :id")
_RESERVATION_LOCKED = text(_RESERVATION.text + " FOR UPDATE OF r")

_ADD_RESERVATION = text(
    "INSERT INTO promo_reservation (id, promo_id, customer_id, unit_no, state, created_at,"
    " expires_at, updated_at) VALUES (:id, :promo_id, :customer_id, :unit_no, :state,"
    " :created_at, :expires_at, :updated_at)"
)

# held -> purchasing, while the hold is live and the unit still ours; the unit is then held
# until 'infinity' so that no reader sees it expire during the platform call.
_START_PURCHASE = text(
    """
    WITH unit AS (
        UPDATE promo_unit SET held_until = 'infinity'
        WHERE promo_id = :promo_id AND unit_no = :unit_no AND reservation_id = :id
          AND sold_at IS NULL AND held_until > :now
        RETURNING 1
    )
    UPDATE promo_reservation SET state = 'purchasing', updated_at = :now
    WHERE id = :id AND state = 'held' AND expires_at > :now AND EXISTS (SELECT 1 FROM unit)
    RETURNING id
    """
)
_SELL = text(
    """
    WITH unit AS (
        UPDATE promo_unit SET sold_at = :now
        WHERE promo_id = :promo_id AND unit_no = :unit_no AND reservation_id = :id
          AND sold_at IS NULL
    )
    UPDATE promo_reservation SET state = 'sold', updated_at = :now
    WHERE id = :id AND state = 'purchasing'
    RETURNING id
    """
)
_BACK_TO_HELD = text(
    """
    WITH unit AS (
        UPDATE promo_unit SET held_until = :expires_at
        WHERE promo_id = :promo_id AND unit_no = :unit_no AND reservation_id = :id
          AND sold_at IS NULL
    )
    UPDATE promo_reservation SET state = 'held', updated_at = :now
    WHERE id = :id AND state = 'purchasing'
    RETURNING id
    """
)


def promo_from_row(row) -> Promo:
    values = list(row)
    values[8] = tuple(values[8] or ())
    return Promo(*values)


def _reservation(row) -> Reservation:
    *values, owns = row
    values[4] = ReservationState(values[4])
    return Reservation(*values, owns_unit=owns)


class SqlAlchemyPromoRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def profile(self, customer_id: str, *, lock: bool = False) -> Profile | None:
        statement = _PROFILE_LOCKED if lock else _PROFILE
        row = self.connection.execute(statement, {"customer_id": customer_id}).first()
        if row is None:
            return None
        return Profile(row[0], row[1], row[2], tuple(row[3] or ()))

    def promo(self, promo_id: int) -> Promo | None:
        row = self.connection.execute(_PROMO, {"promo_id": promo_id}).first()
        return promo_from_row(row) if row else None

    def eligible(
        self, profile: Profile, now: datetime, max_radius_km: float
    ) -> list[EligiblePromo]:
        box = geo.box_around(profile.latitude, profile.longitude, max_radius_km)
        rows = self.connection.execute(
            _ELIGIBLE,
            {
                **box.params(),
                "lat": profile.latitude,
                "lon": profile.longitude,
                "now": now,
                "segments": list(profile.segments),
                "customer_id": profile.customer_id,
            },
        )
        found = []
        for row in rows:
            promo_id, store_id, name, sku, price, km, ends_at, left = row[:8]
            rid, state, expires, owns = row[8:]
            live = rid is not None and (
                state == "purchasing" or (state == "held" and expires > now and owns)
            )
            if left == 0 and not live:
                continue
            found.append(
                EligiblePromo(
                    promo_id,
                    store_id,
                    name,
                    sku,
                    price,
                    km,
                    left,
                    ends_at,
                    rid if live else None,
                    expires if live and state == "held" else None,
                )
            )
        return found

    def latest_reservation(self, promo_id: int, customer_id: str) -> Reservation | None:
        row = self.connection.execute(
            _LATEST, {"promo_id": promo_id, "customer_id": customer_id}
        ).first()
        return _reservation(row) if row else None

    def take_unit(
        self, promo_id: int, reservation_id: str, now: datetime, until: datetime
    ) -> int | None:
        return self.connection.execute(
            _TAKE_UNIT,
            {"promo_id": promo_id, "reservation_id": reservation_id, "now": now, "until": until},
        ).scalar()

    def add_reservation(self, reservation: Reservation) -> None:
        self.connection.execute(
            _ADD_RESERVATION,
            {
                "id": reservation.id,
                "promo_id": reservation.promo_id,
                "customer_id": reservation.customer_id,
                "unit_no": reservation.unit_no,
                "state": reservation.stored_state.value,
                "created_at": reservation.created_at,
                "expires_at": reservation.expires_at,
                "updated_at": reservation.updated_at,
            },
        )

    def reservation(self, reservation_id: str, *, lock: bool = False) -> Reservation | None:
        statement = _RESERVATION_LOCKED if lock else _RESERVATION
        row = self.connection.execute(statement, {"id": reservation_id}).first()
        return _reservation(row) if row else None

    def _transition(self, statement, reservation: Reservation, now: datetime) -> bool:
        params = {
            "id": reservation.id,
            "promo_id": reservation.promo_id,
            "unit_no": reservation.unit_no,
            "expires_at": reservation.expires_at,
            "now": now,
        }
        return self.connection.execute(statement, params).first() is not None

    def start_purchase(self, reservation: Reservation, now: datetime) -> bool:
        return self._transition(_START_PURCHASE, reservation, now)

    def sell(self, reservation: Reservation, now: datetime) -> bool:
        return self._transition(_SELL, reservation, now)

    def back_to_held(self, reservation: Reservation, now: datetime) -> bool:
        return self._transition(_BACK_TO_HELD, reservation, now)
