from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    delete,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from domain.model import StatusChange, Subscription, SubscriptionStatus
from repositories.status_rule import (
    CURRENT_STATUS,
    cached_status_holds,
    cached_status_stale,
    current_club_status,
    current_subscription_status,
)
from repositories.tables import (
    Subscription as SubscriptionRow,
)
from repositories.tables import (
    SubscriptionClaim,
    SubscriptionStatusHistory,
    SupersededStatusChange,
)


def eligible_select(at: datetime, club_statuses: Iterable[int]) -> CompoundSelect:
    """SELECT id of the eligible subscriptions at `at`, in no order, in one statement.

    For the billing run, which streams the whole set (joining what else it needs on id);
    the endpoint pages through the same set with the statements of
    repositories/eligible_pages.py, on one snapshot.
    """
    clubs = current_club_status(at).subquery("club_now")
    shipping = select(clubs.c.entity_id).where(
        clubs.c.status_id.in_([int(s) for s in club_statuses])
    )
    active = int(SubscriptionStatus.ACTIVE)
    cache = CURRENT_STATUS.c
    cached = select(cache.subscription_id.label("id")).where(
        cached_status_holds(at), cache.status_id == active, cache.club_id.in_(shipping)
    )
    stale = cached_status_stale(at).subquery("stale")
    live_status = current_subscription_status(
        at, SubscriptionStatusHistory.subscription_id.in_(select(stale.c.subscription_id))
    ).subquery("live_status")
    live = (
        select(SubscriptionRow.id.label("id"))
        .join(live_status, live_status.c.entity_id == SubscriptionRow.id)
        .where(live_status.c.status_id == active, SubscriptionRow.club_id.in_(shipping))
    )
    return union_all(cached, live)


class SqlAlchemySubscriptionRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, subscription_id: str, at: datetime, *, lock: bool = False) -> Subscription | None:
        stmt = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
        if lock:
            stmt = stmt.with_for_update()
        row = self.connection.execute(stmt).first()
        if row is None:
            return None
        status = self.connection.execute(
            current_subscription_status(at, SubscriptionStatusHistory.subscription_id == row.id)
        ).first()
        return Subscription(
            id=row.id,
            club_id=row.club_id,
            customer_id=row.customer_store_id,
            create_date=row.create_date,
            status_id=status.status_id if status else None,
        )

    def claim(self, club_id: int, customer_id: str, subscription_id: str) -> str | None:
        # Each statement reads a fresh snapshot (READ COMMITTED), so after waiting on a
        # concurrent claim we see what it committed.
        while True:
            inserted = self.connection.execute(
                pg_insert(SubscriptionClaim)
                .values(
                    club_id=club_id,
                    customer_store_id=customer_id,
                    subscription_id=subscription_id,
                )
                .on_conflict_do_nothing()
                .returning(SubscriptionClaim.subscription_id)
            ).first()
            if inserted:
                return None
            holder = self.connection.scalar(
                select(SubscriptionClaim.subscription_id).where(
                    SubscriptionClaim.club_id == club_id,
                    SubscriptionClaim.customer_store_id == customer_id,
                )
            )
            if holder is None:
                continue  # released by a rollback or a cascade between our two statements
            if self._still_holds(holder, club_id, customer_id):
                return holder
            # The holder was moved to another club or customer by SQL: take its place.
            taken = self.connection.execute(
                update(SubscriptionClaim)
                .where(
                    SubscriptionClaim.club_id == club_id,
                    SubscriptionClaim.customer_store_id == customer_id,
                    SubscriptionClaim.subscription_id == holder,
                )
                .values(subscription_id=subscription_id)
            ).rowcount
            if taken:
                return None

    def _still_holds(self, subscription_id: str, club_id: int, customer_id: str) -> bool:
        return (
            self.connection.scalar(
                select(SubscriptionRow.id).where(
                    SubscriptionRow.id == subscription_id,
                    SubscriptionRow.club_id == club_id,
                    SubscriptionRow.customer_store_id == customer_id,
                )
            )
            is not None
        )

    def find_by_customer(self, club_id: int, customer_id: str) -> str | None:
        return self.connection.scalar(
            select(SubscriptionRow.id)
            .where(
                SubscriptionRow.club_id == club_id,
                SubscriptionRow.customer_store_id == customer_id,
            )
            .order_by(SubscriptionRow.create_date.nulls_last(), SubscriptionRow.id)
            .limit(1)
        )

    def add(self, subscription: Subscription) -> None:
        self.connection.execute(
            insert(SubscriptionRow).values(
                id=subscription.id,
                club_id=subscription.club_id,
                customer_store_id=subscription.customer_id,
                create_date=subscription.create_date,
            )
        )

    def eligible_ids(
        self,
        at: datetime,
        club_statuses: Iterable[int],
        after: str | None,
        limit: int | None,
    ) -> list[str]:
        # Its statements are built on first use (repositories/eligible_pages.py).
        from repositories import eligible_pages

        return eligible_pages.eligible_ids(self.connection, at, club_statuses, after, limit)


class SqlAlchemyStatusHistoryRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, changes: Sequence[StatusChange]) -> None:
        self.connection.execute(
            insert(SubscriptionStatusHistory),
            [
                {
                    "id": c.id,
                    "subscription_id": c.subscription_id,
                    "status_id": int(c.status_id),
                    "effect_date": c.effect_date,
                    "create_date": c.create_date,
                    "details": c.details,
                }
                for c in changes
            ],
        )

    def supersede_pending(
        self, subscription_id: str, now: datetime, superseded_by: str, reason: str
    ) -> list[str]:
        h = SubscriptionStatusHistory
        pending = (h.subscription_id == subscription_id) & (h.effect_date > now)
        return supersede(self.connection, pending, now, superseded_by, reason)


def supersede(
    connection: Connection,
    rows: ColumnElement[bool],
    now: datetime,
    superseded_by: str,
    reason: str,
) -> list[str]:
    """Move the history rows `rows` selects to superseded_status_change, kept with when and
    why, in one statement; returns their ids (the status endpoint, club changes)."""
    h = SubscriptionStatusHistory
    moved = (
        delete(h)
        .where(rows)
        .returning(h.id, h.subscription_id, h.status_id, h.effect_date, h.create_date, h.details)
        .cte("moved")
    )
    kept = (
        insert(SupersededStatusChange)
        .from_select(
            [
                "history_id",
                "subscription_id",
                "status_id",
                "effect_date",
                "create_date",
                "details",
                "superseded_at",
                "superseded_by",
                "reason",
            ],
            select(
                moved.c.id,
                moved.c.subscription_id,
                moved.c.status_id,
                moved.c.effect_date,
                moved.c.create_date,
                moved.c.details,
                literal(now),
                literal(superseded_by),
                literal(reason),
            ),
        )
        .add_cte(moved)
        .returning(SupersededStatusChange.history_id)
    )
    return list(connection.scalars(kept))
