"""The current-status rule of the approved data model, written once in SQL for every entity.

At instant T the current status is the one of the history row with the greatest
effect_date <= T, ties broken by the greatest create_date (NULL lowest), then the
greatest id. Future-dated and NULL-dated rows do not count; no row means no status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    CompoundSelect,
    DateTime,
    Exists,
    Integer,
    MetaData,
    ScalarSelect,
    Select,
    String,
    Table,
    and_,
    or_,
    select,
    true,
    union,
)

from repositories.tables import ClubStatusHistory, Subscription, SubscriptionStatusHistory


@dataclass(frozen=True)
class History:
    table: Any
    entity: Any
    status: Any

    def _ranked(self, at: datetime) -> Select:
        h = self.table
        return (
            select(self.entity.label("entity_id"), self.status.label("status_id"))
            .where(self.entity.is_not(None), h.effect_date <= at)
            .order_by(
                self.entity,
                h.effect_date.desc(),
                h.create_date.desc().nulls_last(),
                h.id.desc(),
            )
        )

    def current(self, at: datetime, where: ColumnElement[bool] | None = None) -> Select:
        """(entity_id, status_id) of every entity with a current status at `at`."""
        stmt = self._ranked(at).distinct(self.entity)
        return stmt if where is None else stmt.where(where)

    def status_of(self, entity: ColumnElement[Any], at: datetime) -> ScalarSelect:
        """The current status of one entity (a correlated scalar subquery)."""
        return (
            self._ranked(at)
            .with_only_columns(self.status)
            .where(self.entity == entity)
            .limit(1)
            .scalar_subquery()
        )


SUBSCRIPTIONS = History(
    SubscriptionStatusHistory,
    SubscriptionStatusHistory.subscription_id,
    SubscriptionStatusHistory.status_id,
)
CLUBS = History(ClubStatusHistory, ClubStatusHistory.club_id, ClubStatusHistory.club_status_id)


def current_subscription_status(at: datetime, where: ColumnElement[bool] | None = None) -> Select:
    return SUBSCRIPTIONS.current(at, where)


def current_club_status(at: datetime, where: ColumnElement[bool] | None = None) -> Select:
    return CLUBS.current(at, where)


# The cache of revision 0004: each row is the rule's answer on the interval
# [valid_from, valid_until) (NULL bounds open), unless its subscription is marked dirty
# (written since the row was computed; a NULL id marks everything, after a TRUNCATE).
# Its own MetaData: nothing here is ever created from the mapping.
_CACHE_METADATA = MetaData()
CURRENT_STATUS = Table(
    "subscription_current_status",
    _CACHE_METADATA,
    Column("subscription_id", String(36), primary_key=True),
    Column("club_id", Integer),
    Column("status_id", Integer),
    Column("valid_from", DateTime),
    Column("valid_until", DateTime),
)
DIRTY = Table(
    "subscription_status_dirty",
    _CACHE_METADATA,
    Column("seq", BigInteger, primary_key=True),
    Column("subscription_id", String(36)),
)


def _everything_dirty() -> Exists:
    return select(DIRTY.c.seq).where(DIRTY.c.subscription_id.is_(None)).exists()


def cached_status_holds(
    at: datetime, after: ColumnElement[Any] | None = None
) -> ColumnElement[bool]:
    """True for cache rows whose interval contains `at` and that no write has outdated.

    `after`: the caller reads only cache rows with an id above it. The marks are then
    read from there too: PostgreSQL does not carry the bound into the anti-join, and
    its merge would otherwise walk every mark below `after` on every page.
    """
    c = CURRENT_STATUS.c
    marked = select(DIRTY.c.seq).where(DIRTY.c.subscription_id == c.subscription_id)
    if after is not None:
        marked = marked.where(DIRTY.c.subscription_id > after)
    return and_(
        or_(c.valid_from.is_(None), c.valid_from <= at),
        or_(c.valid_until.is_(None), c.valid_until > at),
        ~marked.exists(),
        ~_everything_dirty(),
    )


def cached_status_stale(
    at: datetime,
    after: ColumnElement[Any] | None = None,
    upper: ColumnElement[Any] | None = None,
    *,
    outside: bool = True,
    everything: bool = True,
) -> Select | CompoundSelect:
    """Subscriptions whose status must be computed live at `at` (the complement of the
    above, written so each part uses an index; the last part is empty but after a TRUNCATE),
    optionally only those with an id in (after, upper] (a NULL bound is open).

    A caller that knows no cache row lies outside its interval (`outside=False`), or that
    not everything is marked (`everything=False`), leaves those parts out: the marks alone
    are one index range, far cheaper to plan than the union (a page's planning was most of
    its cost)."""
    c = CURRENT_STATUS.c
    subscription = Subscription.__table__.c

    def within(column: ColumnElement[Any]) -> ColumnElement[bool]:
        conditions = []
        if after is not None:
            conditions.append(or_(after.is_(None), column > after))
        if upper is not None:
            conditions.append(or_(upper.is_(None), column <= upper))
        return and_(true(), *conditions)

    marked = select(DIRTY.c.subscription_id).where(
        DIRTY.c.subscription_id.is_not(None), within(DIRTY.c.subscription_id)
    )
    parts = [marked]
    if outside:
        parts += [
            select(c.subscription_id).where(c.valid_until <= at, within(c.subscription_id)),
            select(c.subscription_id).where(c.valid_from > at, within(c.subscription_id)),
        ]
    if everything:
        parts.append(select(subscription.id).where(_everything_dirty(), within(subscription.id)))
    return union(*parts) if len(parts) > 1 else marked.distinct()
