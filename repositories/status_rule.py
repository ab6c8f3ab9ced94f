"""The current-status rule of spec/data-model.md, written once in SQL for every entity.

At instant T the current status is the one of the history row with the greatest
effect_date <= T, ties broken by the greatest create_date (NULL lowest), then the
greatest id. Future-dated and NULL-dated rows do not count; no row means no status.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Select, select

from repositories.tables import ClubStatusHistory, SubscriptionStatusHistory


def _current(entity_col, status_col, history, at: datetime, entity_filter=None) -> Select:
    stmt = (
        select(entity_col.label("entity_id"), status_col.label("status_id"))
        .distinct(entity_col)
        .where(entity_col.is_not(None), history.effect_date <= at)
        .order_by(
            entity_col,
            history.effect_date.desc(),
            history.create_date.desc().nulls_last(),
            history.id.desc(),
        )
    )
    if entity_filter is not None:
        stmt = stmt.where(entity_filter)
    return stmt


def current_subscription_status(at: datetime, where: ColumnElement[bool] | None = None) -> Select:
    h = SubscriptionStatusHistory
    return _current(h.subscription_id, h.status_id, h, at, where)


def current_club_status(at: datetime, where: ColumnElement[bool] | None = None) -> Select:
    h = ClubStatusHistory
    return _current(h.club_id, h.club_status_id, h, at, where)
