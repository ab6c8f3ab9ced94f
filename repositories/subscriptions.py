from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter

from sqlalchemy import (
    CompoundSelect,
    DateTime,
    Integer,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from common.observability import logger
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
    the endpoint pages through the same set with the statements below, on one snapshot.
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
        # Statements on one snapshot. The clubs are few: their statuses come first, live, so
        # the big query sees them as constants the planner can estimate (as a subquery they
        # are misjudged, and it then sorts every eligible id to return the first 10,000).
        # psycopg2 sends the level with BEGIN: no round trip of its own.
        if after is None:
            self._absorb()
        conn = self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        shipping, any_stale = conn.execute(
            _SHIPPING_AND_STALE, {"at": at, "statuses": [int(s) for s in club_statuses]}
        ).one()
        if not shipping:
            return []
        params = {"at": at, "shipping": shipping, "after": after, "limit": limit}
        page = _CACHED if after is None else _CACHED_AFTER
        cached_ids = _ids(conn, page, params)
        if not any_stale:
            return cached_ids
        live_ids = _ids(conn, _LIVE if after is None else _LIVE_AFTER, params)
        if not live_ids:
            return cached_ids
        # The two parts are disjoint; PostgreSQL merges them, so the order stays the database
        # collation's.
        return _ids(conn, _MERGE, {"ids": cached_ids + live_ids, "limit": limit})

    def _absorb(self) -> None:
        """Fold the writes since the last read into the cache, before the first page.

        Its own short READ COMMITTED transaction, before the session's snapshot is taken.
        Only for speed: the reads below are exact either way, so a failure is only logged.
        """
        try:
            with self.session.get_bind().begin() as conn:
                conn.execute(_ABSORB)
        except DBAPIError:
            logger.warning("current-status cache not refreshed", exc_info=True)


def _ids(conn: Connection, stmt: Executable, params: dict) -> list[str]:
    # Straight from the driver's tuples: building a Row per id costs more than the query.
    result = conn.execute(stmt, params)
    try:
        return list(map(itemgetter(0), result.cursor.fetchall()))
    finally:
        result.close()


def _eligible_statements():
    """GET /subscription/eligible's statements, built once per container (they are hot)."""
    at = bindparam("at", type_=DateTime)
    clubs = current_club_status(at).subquery("club_now")
    stale = cached_status_stale(at).subquery("stale")
    shipping_and_stale = select(
        func.array(
            select(clubs.c.entity_id)
            .where(clubs.c.status_id.in_(bindparam("statuses", expanding=True)))
            .scalar_subquery()
        ),
        select(stale.c.subscription_id).exists(),
    )
    shipping = any_(bindparam("shipping", type_=ARRAY(Integer)))
    limit = bindparam("limit", type_=Integer)
    after = bindparam("after", type_=String)
    active = int(SubscriptionStatus.ACTIVE)
    # Cache rows whose interval holds at `at`, in id order from the ACTIVE-only index ...
    cache = CURRENT_STATUS.c
    cached = (
        select(cache.subscription_id)
        .where(cached_status_holds(at), cache.status_id == active, cache.club_id == shipping)
        .order_by(cache.subscription_id)
        .limit(limit)
    )
    # ... and the rule applied live to the few whose interval does not hold (a scheduled
    # change fell due since they were computed, or `at` is earlier than their computation).
    live_status = current_subscription_status(
        at, SubscriptionStatusHistory.subscription_id.in_(select(stale.c.subscription_id))
    ).subquery("live_status")
    row = SubscriptionRow.__table__.c
    live = (
        select(row.id)
        .join(live_status, live_status.c.entity_id == row.id)
        .where(live_status.c.status_id == active, row.club_id == shipping)
        .order_by(row.id)
        .limit(limit)
    )
    merged = select(func.unnest(bindparam("ids", type_=ARRAY(String)))).subquery("merged")
    merge = select(merged.c[0]).order_by(merged.c[0]).limit(limit)
    return (
        shipping_and_stale,
        cached,
        cached.where(cache.subscription_id > after),
        live,
        live.where(row.id > after),
        merge,
    )


_SHIPPING_AND_STALE, _CACHED, _CACHED_AFTER, _LIVE, _LIVE_AFTER, _MERGE = _eligible_statements()


_ABSORB = text("SELECT subscription_current_status_absorb()")


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
