"""Flash promos: who may take which promo, and holding a unit for a minute.

A hold is a timestamp, not a job: a unit is free when it is unsold and its `held_until`
has passed, so an expired hold needs no cleaning and the next reservation simply takes
the unit. Taking it is one short transaction; nothing is locked while the customer
decides.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain import errors, geo
from domain.promo_model import EligiblePromo, Profile, Promo, Reservation, ReservationState
from domain.promo_ports import PromoUnitOfWork

# The largest radius a promo may have (the migration's CHECK): the eligible query's box.
MAX_RADIUS_KM = 100.0


def not_running_reason(promo: Promo, now: datetime) -> str | None:
    if promo.cancelled_at is not None:
        return "it was cancelled"
    if now < promo.starts_at:
        return f"it starts at {promo.starts_at.isoformat()}"
    if now >= promo.ends_at:
        return f"it ended at {promo.ends_at.isoformat()}"
    return None


def distance_km(promo: Promo, profile: Profile) -> float:
    return geo.haversine_km(
        promo.store_latitude, promo.store_longitude, profile.latitude, profile.longitude
    )


def in_segments(promo: Promo, profile: Profile) -> bool:
    """A promo without segments targets every customer."""
    return not promo.segments or bool(set(promo.segments) & set(profile.segments))


def _require_eligible(promo: Promo, profile: Profile) -> None:
    if not in_segments(promo, profile):
        raise errors.NotEligible(
            promo.id,
            "segment",
            f"promo {promo.id} is for the segments {', '.join(promo.segments)}, "
            "and this customer is in none of them",
        )
    distance = distance_km(promo, profile)
    if distance > promo.radius_km + geo.TOLERANCE_KM:
        raise errors.NotEligible(
            promo.id,
            "distance",
            f"this customer lives {distance:.2f} km from the store, outside the promo's "
            f"{promo.radius_km:g} km",
        )


def eligible(
    uow: PromoUnitOfWork, customer_id: str, now: datetime, max_radius_km: float = MAX_RADIUS_KM
) -> list[EligiblePromo]:
    with uow:
        profile = uow.promos.profile(customer_id)
        if profile is None:
            raise errors.CustomerProfileNotFound()
        return uow.promos.eligible(profile, now, max_radius_km)


@dataclass(frozen=True)
class Reserved:
    reservation: Reservation
    created: bool


def reserve(
    uow: PromoUnitOfWork, promo_id: int, customer_id: str, now: datetime, hold: timedelta
) -> Reserved:
    """Hold one unit for the customer until now + hold; the same live hold if asked again."""
    with uow:
        # Locks the customer's profile row until commit: one customer's concurrent
        # requests are served one after the other, so they cannot take two units.
        profile = uow.promos.profile(customer_id, lock=True)
        promo = uow.promos.promo(promo_id)
        if promo is None:
            raise errors.PromoNotFound(promo_id)
        if profile is None:
            raise errors.CustomerProfileNotFound()
        latest = uow.promos.latest_reservation(promo_id, customer_id)
        if latest is not None:
            state = latest.state(now)
            if state == ReservationState.SOLD:
                raise errors.AlreadyPurchased(promo_id, latest.id)
            if state in (ReservationState.HELD, ReservationState.PURCHASING):
                return Reserved(latest, created=False)
        why = not_running_reason(promo, now)
        if why:
            raise errors.PromoNotRunning(promo_id, why)
        _require_eligible(promo, profile)
        reservation_id = str(uuid.uuid4())
        expires_at = now + hold
        unit = uow.promos.take_unit(promo_id, reservation_id, now, expires_at)
        if unit is None:
            raise errors.PromoUnavailable(promo_id)
        reservation = Reservation(
            reservation_id,
            promo_id,
            customer_id,
            unit,
            ReservationState.HELD,
            now,
            expires_at,
            now,
        )
        uow.promos.add_reservation(reservation)
        uow.commit()
    return Reserved(reservation, created=True)


def describe_reservation(reservation: Reservation, now: datetime) -> dict[str, Any]:
    return {
        "reservation_id": reservation.id,
        "promo_id": reservation.promo_id,
        "customer_id": reservation.customer_id,
        "state": reservation.state(now).value,
        "created_at": reservation.created_at.isoformat(),
        "expires_at": reservation.expires_at.isoformat(),
    }


def describe_eligible(promo: EligiblePromo) -> dict[str, Any]:
    return {
        "promo_id": promo.promo_id,
        "store": {"id": promo.store_id, "name": promo.store_name},
        "sku": promo.sku,
        "unit_price": None if promo.unit_price is None else str(promo.unit_price),
        "distance_km": round(promo.distance_km, 3),
        "units_left": promo.units_left,
        "ends_at": promo.ends_at.isoformat(),
        "reservation": (
            None
            if promo.reservation_id is None
            else {
                "reservation_id": promo.reservation_id,
                "expires_at": (
                    promo.reservation_expires_at.isoformat()
                    if promo.reservation_expires_at
                    else None
                ),
            }
        ),
    }
