"""Shapes of the flash promos' paths, queries and bodies."""

from __future__ import annotations

from pydantic import Field

from handlers.schemas import INT32_MAX, OpaqueId, Shape, club_id


def promo_id(raw: str | None) -> int:
    """A promo id from the path: a positive integer that fits PostgreSQL's integer."""
    try:
        value = club_id(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"promo id must be an integer between 1 and {INT32_MAX}")
    return value


class PromoCustomerQuery(Shape):
    customer_id: OpaqueId = Field(description="the customer's id in the e-commerce platform")


class ReserveBody(Shape):
    customer_id: OpaqueId = Field(description="the customer's id in the e-commerce platform")


class ReservationPath(Shape):
    reservation_id: OpaqueId = Field(description="the reservation to complete")
