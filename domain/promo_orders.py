"""Completing a promo purchase: the order placed on the platform exactly once.

The same ledger discipline as the charge proxy (domain/charges.py): the order row is
committed (pending) before calling out, the request id is derived by the server from the
reservation, an unknown outcome keeps it for the next attempt, and every transition is
guarded. While the call is in flight, and as long as its outcome is unknown, the hold is
`purchasing` and its unit cannot expire; a refusal gives the hold back until its own
expiry, and the unit is sold only when the platform accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain import errors
from domain.ports import PlatformAnswer
from domain.promo_model import (
    OrderState,
    PromoOrder,
    Reservation,
    ReservationState,
    order_request_id,
)
from domain.promo_ports import PromoPlatform, PromoUnitOfWork
from domain.promos import not_running_reason

# Platform answers about our credentials (401, 403) or our pace (408, 429).
OUR_FAULT = frozenset({401, 403, 408, 429})


@dataclass(frozen=True)
class Completion:
    reservation: Reservation
    order: PromoOrder
    # None: replayed from the ledger (already sold), nothing was sent.
    answer: PlatformAnswer | None = None

    @property
    def sold(self) -> bool:
        return self.reservation.stored_state == ReservationState.SOLD


def _attempt(
    uow: PromoUnitOfWork,
    promo_id: int,
    reservation_id: str,
    now: datetime,
    pending_timeout: timedelta,
) -> tuple[Reservation, PromoOrder] | Completion:
    """Claim the attempt to send (the reservation purchasing, the order pending), or the
    recorded sale to replay."""
    reservation = uow.promos.reservation(reservation_id, lock=True)
    if reservation is None or reservation.promo_id != promo_id:
        raise errors.ReservationNotFound(promo_id, reservation_id)
    order = uow.promo_orders.for_reservation(reservation_id)
    state = reservation.state(now)
    if state == ReservationState.SOLD:
        assert order is not None
        return Completion(reservation, order)
    if state in (ReservationState.EXPIRED, ReservationState.RELEASED):
        raise errors.ReservationExpired(reservation_id, reservation.expires_at.isoformat())
    promo = uow.promos.promo(promo_id)
    if promo is None:
        raise errors.PromoNotFound(promo_id)
    if state == ReservationState.PURCHASING:
        assert order is not None
        stale = order.last_attempt_at <= now - pending_timeout
        if order.state == OrderState.PENDING and not stale:
            raise errors.PurchaseInProgress(reservation_id)
        # An unknown outcome (or an attempt that died): the platform may hold the order,
        # so the same request id goes again and lets it deduplicate.
        return reservation, uow.promo_orders.claim_request_id(
            reservation, promo, order.request_id, order, now
        )
    # A live hold: only a promo cancelled since then stops the purchase (one that ended
    # during the customer's minute is still honoured).
    if promo.cancelled_at is not None:
        raise errors.PromoNotRunning(promo_id, not_running_reason(promo, now) or "cancelled")
    if not uow.promos.start_purchase(reservation, now):
        # Its unit went to someone else in between: the hold is over.
        raise errors.ReservationExpired(reservation_id, reservation.expires_at.isoformat())
    # A first order, or a new one after the platform refused the previous attempt.
    request_id = order_request_id(reservation_id, 1 if order is None else order.attempts + 1)
    return reservation, uow.promo_orders.claim_request_id(
        reservation, promo, request_id, order, now
    )


def complete(
    uow: PromoUnitOfWork,
    platform: PromoPlatform,
    promo_id: int,
    reservation_id: str,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
) -> Completion:
    now = clock()
    with uow:
        claimed = _attempt(uow, promo_id, reservation_id, now, pending_timeout)
        if isinstance(claimed, Completion):
            return claimed
        reservation, order = claimed
        uow.commit()
    # The pending order is committed, the unit held until further notice: now call out.
    try:
        answer = platform.place_order(
            order.request_id, order.customer_id, order.sku, order.unit_price
        )
    except errors.PlatformError as exc:
        # Never sent: the platform cannot have the order, the customer may try again.
        state = OrderState.UNKNOWN if exc.sent else OrderState.FAILED
        _record(uow, reservation, order, state, None, None, exc.message, clock())
        raise
    if not (200 <= answer.status < 300 or 400 <= answer.status < 500):
        _record(
            uow, reservation, order, OrderState.UNKNOWN, answer.status, answer.text, None, clock()
        )
        raise errors.PlatformFailed(
            f"the e-commerce platform failed with HTTP {answer.status}",
            platform_status=answer.status,
        )
    if answer.status in OUR_FAULT:
        # Our credentials or our pace, not the customer's doing: no order was created, the
        # hold is theirs again, and the caller is told it is the platform's error.
        _record(
            uow, reservation, order, OrderState.FAILED, answer.status, answer.text, None, clock()
        )
        raise errors.PlatformFailed(
            f"the e-commerce platform refused our request with HTTP {answer.status}",
            sent=False,
            platform_status=answer.status,
        )
    state = OrderState.SUCCEEDED if 200 <= answer.status < 300 else OrderState.FAILED
    settled = _record(uow, reservation, order, state, answer.status, answer.text, None, clock())
    return Completion(settled[0], settled[1], answer)


def _record(
    uow: PromoUnitOfWork,
    reservation: Reservation,
    order: PromoOrder,
    state: OrderState,
    status: int | None,
    body: str | None,
    error: str | None,
    now: datetime,
) -> tuple[Reservation, PromoOrder]:
    with uow:
        recorded = uow.promo_orders.record(order, state, status, body, error, now)
        if recorded is not None:
            if state == OrderState.SUCCEEDED:
                uow.promos.sell(reservation, now)
            elif state == OrderState.FAILED:
                # Refused, or never sent: the customer keeps what is left of the minute.
                uow.promos.back_to_held(reservation, now)
        uow.commit()
    with uow:
        current = uow.promos.reservation(reservation.id) or reservation
        current_order = uow.promo_orders.for_reservation(reservation.id, lock=False) or order
    return current, current_order


def describe_order(order: PromoOrder) -> dict[str, Any]:
    return {
        "request_id": order.request_id,
        "state": order.state.value,
        "attempts": order.attempts,
        "sku": order.sku,
        "unit_price": None if order.unit_price is None else str(order.unit_price),
        "platform_status": order.platform_status,
    }
