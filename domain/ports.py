"""What the domain needs from storage; repositories/ implements it, tests fake it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, Self

from domain.model import StatusChange, Subscription


class ClubRepository(Protocol):
    def exists(self, club_id: int) -> bool: ...

    def current_status(self, club_id: int, at: datetime) -> int | None: ...


class SubscriptionRepository(Protocol):
    def get(self, subscription_id: str, at: datetime, *, lock: bool = False) -> Subscription | None:
        """The subscription with its current status at `at`; `lock` serialises writers."""
        ...

    def claim(self, club_id: int, customer_id: str, subscription_id: str) -> str | None:
        """Reserve (club, customer) for a new subscription in this transaction.

        Returns None when reserved, or the id of the subscription holding the reservation.
        Blocks while a concurrent transaction holds the same reservation uncommitted.
        """
        ...

    def find_by_customer(self, club_id: int, customer_id: str) -> str | None: ...

    def add(self, subscription: Subscription) -> None: ...

    def eligible_ids(
        self,
        at: datetime,
        club_statuses: Iterable[int],
        after: str | None,
        limit: int | None,
    ) -> list[str]: ...


class StatusHistoryRepository(Protocol):
    def add(self, changes: Sequence[StatusChange]) -> None: ...

    def supersede_pending(
        self, subscription_id: str, now: datetime, superseded_by: str, reason: str
    ) -> list[str]:
        """Move rows not yet in effect at `now` to the audit table; returns their ids."""
        ...


class UnitOfWork(Protocol):
    clubs: ClubRepository
    subscriptions: SubscriptionRepository
    history: StatusHistoryRepository

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None: ...
