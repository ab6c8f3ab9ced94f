"""What the flash promos need from storage, the platform, the queue and the CRM's topic."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol, Self

from domain.ports import PlatformAnswer
from domain.promo_model import (
    Announcement,
    EligiblePromo,
    Notification,
    OrderState,
    Profile,
    Promo,
    PromoOrder,
    Reservation,
)


class PromoPlatform(Protocol):
    def place_order(
        self, request_id: str, customer_id: str, sku_id: int, unit_price: Decimal | None = None
    ) -> PlatformAnswer:
        """POST /order/{request_id}; raises PlatformUnreachable or PlatformTimeout."""
        ...


class PromoRepository(Protocol):
    def profile(self, customer_id: str, *, lock: bool = False) -> Profile | None:
        """`lock` serialises one customer's reservations (a short row lock)."""
        ...

    def promo(self, promo_id: int) -> Promo | None: ...

    def eligible(
        self, profile: Profile, now: datetime, max_radius_km: float
    ) -> list[EligiblePromo]: ...

    def latest_reservation(self, promo_id: int, customer_id: str) -> Reservation | None: ...

    def take_unit(
        self, promo_id: int, reservation_id: str, now: datetime, until: datetime
    ) -> int | None:
        """Hold a free unit until `until` (one guarded UPDATE, SKIP LOCKED); None if none."""
        ...

    def add_reservation(self, reservation: Reservation) -> None: ...

    def reservation(self, reservation_id: str, *, lock: bool = False) -> Reservation | None: ...

    def start_purchase(self, reservation: Reservation, now: datetime) -> bool:
        """held -> purchasing and the unit held until further notice, only while the hold
        is live and the unit still this reservation's."""
        ...

    def sell(self, reservation: Reservation, now: datetime) -> bool: ...

    def back_to_held(self, reservation: Reservation, now: datetime) -> bool:
        """purchasing -> held until the hold's own expiry (which may have passed)."""
        ...


class PromoOrderRepository(Protocol):
    def for_reservation(self, reservation_id: str, *, lock: bool = True) -> PromoOrder | None: ...

    def claim_request_id(
        self,
        reservation: Reservation,
        promo: Promo,
        request_id: str,
        previous: PromoOrder | None,
        now: datetime,
    ) -> PromoOrder:
        """THE one place a promo order's request id is claimed (written before calling
        out): a new ledger row, or the next attempt of `previous`."""
        ...

    def record(
        self,
        order: PromoOrder,
        state: OrderState,
        status: int | None,
        body: str | None,
        error: str | None,
        now: datetime,
    ) -> PromoOrder | None:
        """Settle the attempt that still owns the row; None if a newer one took it over."""
        ...

    def list_for_reconciliation(
        self, states: Sequence[OrderState] | None = None, limit: int = 1000
    ) -> list[PromoOrder]: ...


class PromoNotificationRepository(Protocol):
    def to_announce(self, now: datetime) -> list[int]:
        """Ids of running promos not yet announced (not cancelled, not ended)."""
        ...

    def lock_for_announcement(self, promo_id: int, now: datetime) -> Promo | None:
        """The promo, locked for this announcer, if it still needs announcing (SKIP LOCKED)."""
        ...

    def audience(self, promo: Promo, chunk: int) -> Iterator[list[str]]:
        """Customer ids in the promo's segments and radius, streamed by a server-side cursor,
        in lists of at most `chunk`."""
        ...

    def mark_announced(self, promo_id: int, now: datetime) -> None: ...

    def running(self, promo_id: int, now: datetime) -> Promo | None: ...

    def claim(
        self, promo_id: int, customer_ids: Sequence[str], now: datetime, lease_seconds: int
    ) -> list[str]:
        """Record (claim) one notification per customer; returns those not sent or claimed."""
        ...

    def mark_sent(self, promo_id: int, sent: dict[str, str], now: datetime) -> None: ...

    def release(self, promo_id: int, customer_ids: Sequence[str]) -> None: ...


class PromoUnitOfWork(Protocol):
    promos: PromoRepository
    promo_orders: PromoOrderRepository
    promo_notifications: PromoNotificationRepository

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None: ...


class Notifier(Protocol):
    def send(self, notification: Notification) -> str:
        """Tell the CRM (one message per customer); returns the message id."""
        ...


class AnnouncementQueue(Protocol):
    def send(self, messages: Sequence[Announcement]) -> None:
        """At most ten messages, one SendMessageBatch (it may still be in flight)."""
        ...

    def flush(self) -> None:
        """Wait until everything sent is queued; raises if some of it could not be."""
        ...
