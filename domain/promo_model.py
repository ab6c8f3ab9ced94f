"""The flash promos' data, as the domain and its ports pass it around."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

# Promo order request ids live in their own uuid5 namespace, derived from the reservation:
# never chosen by a caller, never equal to a charge's request id.
PROMO_ORDER_NAMESPACE = uuid.UUID("6f1c2a53-5d0e-4c2b-9a51-3c1f3e0b7a17")


def order_request_id(reservation_id: str, attempt: int) -> str:
    """The request id of the `attempt`-th order of a reservation (a new one only after the
    platform refused the previous one; an unknown outcome reuses it)."""
    return str(uuid.uuid5(PROMO_ORDER_NAMESPACE, f"promo-order/{reservation_id}/{attempt}"))


class ReservationState(StrEnum):
    HELD = "held"
    PURCHASING = "purchasing"
    SOLD = "sold"
    # Never written: read from the clock.
    EXPIRED = "expired"
    RELEASED = "released"


class OrderState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Profile:
    customer_id: str
    latitude: float
    longitude: float
    segments: tuple[str, ...]


@dataclass(frozen=True)
class Promo:
    id: int
    store_id: int
    store_name: str | None
    store_latitude: float
    store_longitude: float
    sku: int
    unit_price: Decimal | None
    units: int
    segments: tuple[str, ...]
    radius_km: float
    starts_at: datetime
    ends_at: datetime
    cancelled_at: datetime | None
    announced_at: datetime | None


@dataclass(frozen=True)
class EligiblePromo:
    promo_id: int
    store_id: int
    store_name: str | None
    sku: int
    unit_price: Decimal | None
    distance_km: float
    units_left: int
    ends_at: datetime
    reservation_id: str | None = None
    reservation_expires_at: datetime | None = None


@dataclass(frozen=True)
class Reservation:
    id: str
    promo_id: int
    customer_id: str
    unit_no: int
    stored_state: ReservationState
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    # Whether the reserved unit is still this reservation's (it is given away once expired).
    owns_unit: bool = True

    def state(self, now: datetime) -> ReservationState:
        if self.stored_state != ReservationState.HELD or now < self.expires_at:
            return self.stored_state
        return ReservationState.EXPIRED if self.owns_unit else ReservationState.RELEASED


@dataclass(frozen=True)
class PromoOrder:
    id: int
    reservation_id: str
    promo_id: int
    customer_id: str
    sku: int
    unit_price: Decimal | None
    request_id: str
    state: OrderState
    attempts: int
    platform_status: int | None
    platform_body: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    last_attempt_at: datetime


@dataclass(frozen=True)
class Notification:
    """One message to one customer about one promo (the CRM decides how to tell them)."""

    promo_id: int
    customer_id: str
    store_id: int
    sku: int
    ends_at: datetime


@dataclass(frozen=True)
class Announcement:
    """One queued message: a promo and some of the customers to tell (one SQS message)."""

    promo_id: int
    customer_ids: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"promo_id": self.promo_id, "customer_ids": list(self.customer_ids)}

    @classmethod
    def from_dict(cls, data: dict) -> Announcement:
        promo_id = data.get("promo_id")
        ids = data.get("customer_ids")
        if (
            isinstance(promo_id, bool)
            or not isinstance(promo_id, int)
            or not isinstance(ids, list)
            or not all(isinstance(i, str) and 0 < len(i) <= 36 for i in ids)
        ):
            raise ValueError("not a promo announcement message")
        return cls(promo_id, tuple(ids))
