"""What the read endpoints read (a read model, in the CQRS sense): the club list as JSON
built by the database, a club with its history, a subscription with its club, history and
ledger in one statement. Each is a few index lookups whatever the number of subscriptions.

The statements restate the current-status rule's order (effect_date DESC, create_date DESC
NULLS LAST, id DESC) of repositories/status_rule.py inside their aggregates;
tests/integration/test_read_api.py checks them against it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, Select, bindparam, select, text
from sqlalchemy.engine import Connection

from domain.charges import Charge, ChargeState
from domain.read_model import ClubInfo, ClubListRow, HistoryRow, SubscriptionRecord
from repositories import club_writes
from repositories.charges import schedule_of
from repositories.tables import Club, ClubStatusHistory

_CLUB = Club.__table__
_CLUB_HISTORY = ClubStatusHistory.__table__


def _history(table, entity, status) -> Select:
    """An entity's dated rows in the current-status rule's order, newest first."""
    return (
        select(status.label("status_id"), table.c.effect_date, table.c.details)
        .where(entity == bindparam("entity_id"), table.c.effect_date.is_not(None))
        .order_by(
            table.c.effect_date.desc(), table.c.create_date.desc().nulls_last(), table.c.id.desc()
        )
    )


# Timestamps as Python's isoformat() writes them (microseconds only when not zero, then
# six digits). to_json writes ISO 8601 whatever the session's DateStyle, trimming the
# fraction's trailing zeros, which rpad restores; cheaper than to_char on a thousand rows.
def _iso(column: str) -> str:
    json = f"btrim(to_json({column})::text, '\"')"
    return f"rpad({json}, CASE WHEN length({json}) > 19 THEN 26 ELSE 19 END, '0')"


# GET /clubs: each club's current status and next change by the current-status rule (the
# DISTINCT ON orders of repositories/status_rule.py), timestamps as text.
_CLUBS_SQL = f"""
WITH now AS (
    SELECT DISTINCT ON (club_id) club_id, club_status_id AS status_id, effect_date AS since
    FROM club_status_history
    WHERE club_id IS NOT NULL AND effect_date <= :at
    ORDER BY club_id, effect_date DESC, create_date DESC NULLS LAST, id DESC
), upcoming AS (
    SELECT DISTINCT ON (club_id) club_id, club_status_id AS status_id, effect_date
    FROM club_status_history
    WHERE club_id IS NOT NULL AND effect_date > :at
    ORDER BY club_id, effect_date, create_date DESC NULLS LAST, id DESC
)
SELECT c.id, c.name, c.store_sku, now.status_id, {_iso("now.since")},
       upcoming.status_id, {_iso("upcoming.effect_date")}
FROM club c
LEFT JOIN now ON now.club_id = c.id
LEFT JOIN upcoming ON upcoming.club_id = c.id
WHERE {{filter}}
ORDER BY c.id
"""
_CLUBS = {
    "all": text(_CLUBS_SQL.format(filter="TRUE")),
    "none": text(_CLUBS_SQL.format(filter="now.status_id IS NULL")),
    "status": text(_CLUBS_SQL.format(filter="now.status_id = :status_id")),
}
# Per database and filter, the last club list this container read and the reading of the
# clubs it was read after (repositories/club_writes.py): served again, after one probe,
# while nothing written to club or club_status_history since is visible and no scheduled
# club status change has fallen due. Computing the list costs about 3 ms at 1,000 clubs.
_CLUBS_READ: club_writes.Kept[tuple[ClubListRow, ...]] = club_writes.Kept()
_CLUB_INFO = select(_CLUB.c.id, _CLUB.c.name, _CLUB.c.store_sku).where(
    _CLUB.c.id == bindparam("club_id", type_=Integer)
)
_CLUB_ROWS = _history(_CLUB_HISTORY, _CLUB_HISTORY.c.club_id, _CLUB_HISTORY.c.club_status_id)

# The subscription, its club (status by the rule), schedule, dated history in the rule's
# order, and the ledger rows the view needs, in one round trip. Ledger bodies stay behind.
_SUBSCRIPTION = text(
    """
SELECT s.id, s.customer_store_id, s.create_date, c.id AS club_id, c.name, c.store_sku,
    (SELECT h.club_status_id FROM club_status_history h
     WHERE h.club_id = s.club_id AND h.effect_date <= :at
     ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC LIMIT 1)
        AS club_status_id,
    b.interval, b.anniversary, b.changed_at, b.previous_interval, b.previous_anniversary,
    (SELECT json_agg(json_build_object('status_id', h.status_id,
                                       'effect_date', h.effect_date, 'details', h.details)
                     ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC)
     FROM subscription_status_history h
     WHERE h.subscription_id = s.id AND h.effect_date IS NOT NULL) AS history,
    (SELECT json_agg(json_build_object('id', l.id, 'period', l.period,
                                       'request_id', l.request_id, 'state', l.state,
                                       'attempts', l.attempts,
                                       'platform_status', l.platform_status,
                                       'created_at', l.created_at, 'updated_at', l.updated_at,
                                       'last_attempt_at', l.last_attempt_at,
                                       'billing_date', l.billing_date,
                                       'declined_at', l.declined_at,
                                       'failure_reason', l.failure_reason)
                     ORDER BY l.created_at, l.id)
     FROM charge l
     WHERE l.subscription_id = s.id
       AND (l.state IN ('pending', 'failed', 'unknown', 'error')
            OR l.created_at >= :ledger_since))
        AS ledger
FROM subscription s
LEFT JOIN club c ON c.id = s.club_id
LEFT JOIN billing_schedule b ON b.club_id = s.club_id
WHERE s.id = :subscription_id
"""
)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _ledger_row(subscription_id: str, row: dict) -> Charge:
    return Charge(
        id=row["id"],
        subscription_id=subscription_id,
        period=row["period"],
        request_id=row["request_id"],
        state=ChargeState(row["state"]),
        attempts=row["attempts"],
        platform_status=row["platform_status"],
        platform_body=None,
        created_at=_when(row["created_at"]),
        updated_at=_when(row["updated_at"]),
        last_attempt_at=_when(row["last_attempt_at"]),
        billing_date=_when(row["billing_date"]),
        failure_reason=row["failure_reason"],
        declined_at=_when(row["declined_at"]),
    )


def _history_rows(result) -> list[HistoryRow]:
    return [HistoryRow(row.status_id, row.effect_date, row.details) for row in result]


class SqlAlchemyViewRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def clubs(self, at: datetime, status_id: int | None | str) -> list[ClubListRow]:
        """The clubs as GET /clubs lists them; the last list this container read for the same
        filter and database while it still holds (`_CLUBS_READ`)."""
        known = _CLUBS_READ.get(self.connection, status_id, at)
        if known is not None:
            rows, seen = known
            if self.connection.scalar(club_writes.CHECK, seen.params()):
                return list(rows)
        # The reading first: the list's own snapshot then saw at least as much.
        database, snapshot, until = self.connection.execute(club_writes.READING, {"at": at}).one()
        params: dict = {"at": at}
        if status_id == "ALL":
            stmt = _CLUBS["all"]
        elif status_id is None:
            stmt = _CLUBS["none"]
        else:
            stmt, params["status_id"] = _CLUBS["status"], status_id
        # Straight from the driver's tuples: a Row per club costs more than the query.
        result = self.connection.execute(stmt, params)
        try:
            rows = result.cursor.fetchall()
        finally:
            result.close()
        seen = club_writes.Seen(database, snapshot, at, until)
        _CLUBS_READ.keep(self.connection, status_id, tuple(rows), seen)
        return rows

    def club(self, club_id: int) -> ClubInfo | None:
        row = self.connection.execute(_CLUB_INFO, {"club_id": club_id}).first()
        return ClubInfo(row.id, row.name, row.store_sku) if row else None

    def club_history(self, club_id: int) -> list[HistoryRow]:
        return _history_rows(self.connection.execute(_CLUB_ROWS, {"entity_id": club_id}))

    def subscription(
        self, subscription_id: str, at: datetime, ledger_since: datetime
    ) -> SubscriptionRecord | None:
        row = self.connection.execute(
            _SUBSCRIPTION,
            {"subscription_id": subscription_id, "at": at, "ledger_since": ledger_since},
        ).first()
        if row is None:
            return None
        return SubscriptionRecord(
            id=row.id,
            customer_id=row.customer_store_id,
            create_date=row.create_date,
            club=None if row.club_id is None else ClubInfo(row.club_id, row.name, row.store_sku),
            club_status_id=row.club_status_id,
            # With the schedule it replaced: a change takes effect at a boundary, as billing
            # applies it (domain/schedules.period_in_effect).
            schedule=schedule_of(
                row.interval,
                row.anniversary,
                row.changed_at,
                row.previous_interval,
                row.previous_anniversary,
            ),
            history=tuple(
                HistoryRow(h["status_id"], datetime.fromisoformat(h["effect_date"]), h["details"])
                for h in row.history or ()
            ),
            ledger=tuple(_ledger_row(row.id, charge) for charge in row.ledger or ()),
        )
