"""What the read endpoints read: clubs with their status over time, one subscription with
its club, history and ledger. Statements are built once per container; each answer is at
most three index lookups, whatever the number of subscriptions."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from sqlalchemy import DateTime, Integer, Select, String, bindparam, select
from sqlalchemy.engine import Connection

from domain.charges import Charge, ChargeState
from domain.read_model import ClubInfo, ClubSummary, HistoryRow, SubscriptionRecord
from repositories.charges import schedule_of
from repositories.status_rule import CLUBS
from repositories.tables import BillingSchedule, Club, ClubStatusHistory, SubscriptionStatusHistory
from repositories.tables import Charge as ChargeRow
from repositories.tables import Subscription as SubscriptionRow

_AT = bindparam("at", type_=DateTime)
_CLUB = Club.__table__
_CLUB_HISTORY = ClubStatusHistory.__table__
_SUBSCRIPTION = SubscriptionRow.__table__
_SCHEDULE = BillingSchedule.__table__
_LEDGER = ChargeRow.__table__
UNSETTLED = ("pending", "failed", "unknown")


def _history(table, entity, status) -> Select:
    """An entity's dated rows in the current-status rule's order, newest first."""
    return (
        select(status.label("status_id"), table.c.effect_date, table.c.details)
        .where(entity == bindparam("entity_id"), table.c.effect_date.is_not(None))
        .order_by(
            table.c.effect_date.desc(), table.c.create_date.desc().nulls_last(), table.c.id.desc()
        )
    )


def _clubs_statements() -> dict[str, Select]:
    h = _CLUB_HISTORY.c
    now = CLUBS.current(_AT).add_columns(h.effect_date.label("since")).subquery("now")
    upcoming = (
        select(h.club_id, h.club_status_id, h.effect_date)
        .where(h.club_id.is_not(None), h.effect_date > _AT)
        .order_by(h.club_id, h.effect_date, h.create_date.desc().nulls_last(), h.id.desc())
        .distinct(h.club_id)
        .subquery("upcoming")
    )
    every = (
        select(
            _CLUB.c.id,
            _CLUB.c.name,
            _CLUB.c.store_sku,
            now.c.status_id,
            now.c.since,
            upcoming.c.club_status_id.label("next_status_id"),
            upcoming.c.effect_date.label("next_effect_date"),
        )
        .outerjoin(now, now.c.entity_id == _CLUB.c.id)
        .outerjoin(upcoming, upcoming.c.club_id == _CLUB.c.id)
        .order_by(_CLUB.c.id)
    )
    return {
        "all": every,
        "none": every.where(now.c.status_id.is_(None)),
        "status": every.where(now.c.status_id == bindparam("status_id", type_=Integer)),
    }


_CLUBS = _clubs_statements()
_CLUB_INFO = select(_CLUB.c.id, _CLUB.c.name, _CLUB.c.store_sku).where(
    _CLUB.c.id == bindparam("club_id", type_=Integer)
)
_CLUB_ROWS = _history(_CLUB_HISTORY, _CLUB_HISTORY.c.club_id, _CLUB_HISTORY.c.club_status_id)
_SUBSCRIPTION_ROWS = _history(
    SubscriptionStatusHistory.__table__,
    SubscriptionStatusHistory.__table__.c.subscription_id,
    SubscriptionStatusHistory.__table__.c.status_id,
)
_SUBSCRIPTION_RECORD = (
    select(
        _SUBSCRIPTION.c.id,
        _SUBSCRIPTION.c.customer_store_id,
        _SUBSCRIPTION.c.create_date,
        _CLUB.c.id.label("club_id"),
        _CLUB.c.name,
        _CLUB.c.store_sku,
        CLUBS.status_of(_SUBSCRIPTION.c.club_id, _AT).label("club_status_id"),
        _SCHEDULE.c.interval,
        _SCHEDULE.c.anniversary,
    )
    .select_from(_SUBSCRIPTION)
    .outerjoin(_CLUB, _CLUB.c.id == _SUBSCRIPTION.c.club_id)
    .outerjoin(_SCHEDULE, _SCHEDULE.c.club_id == _SUBSCRIPTION.c.club_id)
    .where(_SUBSCRIPTION.c.id == bindparam("subscription_id", type_=String))
)
_CHARGE_FIELDS = [f.name for f in fields(Charge)]
_LEDGER_ROWS = (
    select(*(_LEDGER.c[name] for name in _CHARGE_FIELDS))
    .where(
        _LEDGER.c.subscription_id == bindparam("subscription_id", type_=String),
        (_LEDGER.c.period == bindparam("period", type_=String)) | _LEDGER.c.state.in_(UNSETTLED),
    )
    .order_by(_LEDGER.c.created_at, _LEDGER.c.id)
)


def _history_rows(result) -> list[HistoryRow]:
    return [HistoryRow(row.status_id, row.effect_date, row.details) for row in result]


class SqlAlchemyViewRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def clubs(self, at: datetime, status_id: int | None | str) -> list[ClubSummary]:
        if status_id == "ALL":
            stmt, params = _CLUBS["all"], {"at": at}
        elif status_id is None:
            stmt, params = _CLUBS["none"], {"at": at}
        else:
            stmt, params = _CLUBS["status"], {"at": at, "status_id": status_id}
        return [
            ClubSummary(
                ClubInfo(row.id, row.name, row.store_sku),
                row.status_id,
                row.since,
                None
                if row.next_effect_date is None
                else HistoryRow(row.next_status_id, row.next_effect_date),
            )
            for row in self.connection.execute(stmt, params)
        ]

    def club(self, club_id: int) -> ClubInfo | None:
        row = self.connection.execute(_CLUB_INFO, {"club_id": club_id}).first()
        return ClubInfo(row.id, row.name, row.store_sku) if row else None

    def club_history(self, club_id: int) -> list[HistoryRow]:
        return _history_rows(self.connection.execute(_CLUB_ROWS, {"entity_id": club_id}))

    def subscription(self, subscription_id: str, at: datetime) -> SubscriptionRecord | None:
        row = self.connection.execute(
            _SUBSCRIPTION_RECORD, {"subscription_id": subscription_id, "at": at}
        ).first()
        if row is None:
            return None
        return SubscriptionRecord(
            id=row.id,
            customer_id=row.customer_store_id,
            create_date=row.create_date,
            club=None if row.club_id is None else ClubInfo(row.club_id, row.name, row.store_sku),
            club_status_id=row.club_status_id,
            schedule=schedule_of(row.interval, row.anniversary),
        )

    def subscription_history(self, subscription_id: str) -> list[HistoryRow]:
        return _history_rows(
            self.connection.execute(_SUBSCRIPTION_ROWS, {"entity_id": subscription_id})
        )

    def ledger(self, subscription_id: str, period: str) -> list[Charge]:
        rows = self.connection.execute(
            _LEDGER_ROWS, {"subscription_id": subscription_id, "period": period}
        )
        return [Charge(**{**row._asdict(), "state": ChargeState(row.state)}) for row in rows]
