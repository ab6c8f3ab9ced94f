from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

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


class SqlAlchemySubscriptionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, subscription_id: str, at: datetime, *, lock: bool = False) -> Subscription | None:
        stmt = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
        if lock:
            stmt = stmt.with_for_update()
        row = self.session.scalar(stmt)
        if row is None:
            return None
        status = self.session.execute(
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
            inserted = self.session.execute(
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
            holder = self.session.scalar(
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
            taken = self.session.execute(
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
            self.session.scalar(
                select(SubscriptionRow.id).where(
                    SubscriptionRow.id == subscription_id,
                    SubscriptionRow.club_id == club_id,
                    SubscriptionRow.customer_store_id == customer_id,
                )
            )
            is not None
        )

    def find_by_customer(self, club_id: int, customer_id: str) -> str | None:
        return self.session.scalar(
            select(SubscriptionRow.id)
            .where(
                SubscriptionRow.club_id == club_id,
                SubscriptionRow.customer_store_id == customer_id,
            )
            .order_by(SubscriptionRow.create_date.nulls_last(), SubscriptionRow.id)
            .limit(1)
        )

    def add(self, subscription: Subscription) -> None:
        self.session.execute(
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
        # One statement, so one snapshot: cache rows whose interval holds at `at`, plus the
        # rule applied live to the few whose interval does not (a scheduled change fell due
        # since they were computed, or `at` is before it). The clubs are few: their statuses
        # are computed live and materialised, which also keeps the planner away from a
        # nested loop over a misestimated join.
        cache = CURRENT_STATUS.c
        clubs = current_club_status(at).cte("club_now").prefix_with("MATERIALIZED")
        shipping = select(clubs.c.entity_id).where(
            clubs.c.status_id.in_([int(s) for s in club_statuses])
        )
        stale = cached_status_stale(at).cte("stale").prefix_with("MATERIALIZED")
        live_status = current_subscription_status(
            at, SubscriptionStatusHistory.subscription_id.in_(select(stale.c.subscription_id))
        ).subquery("live_status")
        active = int(SubscriptionStatus.ACTIVE)
        cached = select(cache.subscription_id.label("id")).where(
            cached_status_holds(at),
            cache.status_id == active,
            cache.club_id.in_(shipping),
        )
        live = (
            select(SubscriptionRow.id.label("id"))
            .join(live_status, live_status.c.entity_id == SubscriptionRow.id)
            .where(live_status.c.status_id == active, SubscriptionRow.club_id.in_(shipping))
        )
        if after is not None:
            cached = cached.where(cache.subscription_id > after)
            live = live.where(SubscriptionRow.id > after)
        both = cached.union_all(live).subquery("eligible")
        stmt = select(both.c.id).order_by(both.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(self.session.scalars(stmt))


class SqlAlchemyStatusHistoryRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, changes: Sequence[StatusChange]) -> None:
        self.session.execute(
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
        moved = (
            delete(h)
            .where(h.subscription_id == subscription_id, h.effect_date > now)
            .returning(
                h.id, h.subscription_id, h.status_id, h.effect_date, h.create_date, h.details
            )
            .cte("moved")
        )
        audit = (
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
        return list(self.session.scalars(audit))
