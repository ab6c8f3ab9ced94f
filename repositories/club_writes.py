"""What a reader saw of the clubs, and whether it still holds (revision 0015).

Statement-level triggers append a row to `club_write`, with the writing transaction's id,
for every statement that writes `club` or `club_status_history`. A reader that notes the
snapshot it read the clubs in (and the database, and the instant it asked about) can later
tell with one index probe whether anything it did not see has been committed since: a row
whose transaction that snapshot did not see (`pg_visible_in_snapshot`). Until then, and
until the first club status change scheduled after that instant falls due, what it read
still holds. GET /subscription/eligible keeps the clubs that ship this way, GET /clubs its
whole list (docs/eligible-cache.md).
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Generic, NamedTuple, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Exists,
    Integer,
    MetaData,
    ScalarSelect,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import UserDefinedType

from repositories.tables import ClubStatusHistory

CLUB_WRITE = Table("club_write", MetaData(), Column("xid", String))


class _PgSnapshot(UserDefinedType):
    """PostgreSQL's pg_snapshot, sent and kept as its text."""

    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "pg_snapshot"


class Seen(NamedTuple):
    """A reading of the clubs: the database it was made in (its oid), the snapshot it saw
    (pg_snapshot's text), the instant it was about, and the first club status change
    scheduled after that instant (None: none)."""

    database: int
    snapshot: str
    since: datetime
    until: datetime | None

    def holds_at(self, at: datetime) -> bool:
        """Whether the reading is about `at` as well (no scheduled change in between)."""
        return self.since <= at and (self.until is None or at < self.until)

    def params(self) -> dict:
        return {"seen_database": self.database, "seen_snapshot": self.snapshot}


T = TypeVar("T")


class Kept(Generic[T]):
    """What a container read with the clubs, per database and key, beside the reading it was
    read after. `get` gives it back only for an instant the reading is about; the caller
    still checks `still_holds` (one process may use several databases: the key holds the
    connection's URL, and the check the database's oid)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, Hashable], tuple[T, Seen]] = {}

    def get(self, connection: Connection, key: Hashable, at: datetime) -> tuple[T, Seen] | None:
        kept = self._kept.get((str(connection.engine.url), key))
        return kept if kept is not None and kept[1].holds_at(at) else None

    def keep(self, connection: Connection, key: Hashable, value: T, seen: Seen) -> None:
        self._kept[(str(connection.engine.url), key)] = (value, seen)

    def forget(self, connection: Connection, key: Hashable) -> None:
        self._kept.pop((str(connection.engine.url), key), None)

    def clear(self) -> None:
        self._kept.clear()


def _database_oid() -> ScalarSelect:
    return (
        select(literal_column("oid", Integer))
        .select_from(text("pg_database"))
        .where(text("datname = current_database()"))
        .scalar_subquery()
    )


def reading(at: ColumnElement[datetime]) -> list[ColumnElement]:
    """Columns to select in the statement (or just before the statements) that read the
    clubs: the database, the snapshot, the next scheduled change after `at`; `Seen` takes
    them with `at`. Read before the clubs in another snapshot, they only make the next
    check fail more often (the clubs' snapshot saw at least as much)."""
    return [
        _database_oid(),
        cast(func.pg_current_snapshot(), Text),
        select(func.min(ClubStatusHistory.effect_date))
        .where(ClubStatusHistory.effect_date > at)
        .scalar_subquery(),
    ]


def still_holds() -> ColumnElement[bool]:
    """True while nothing written to the clubs since the reading bound as `seen_database`
    and `seen_snapshot` (`Seen.params`) is visible, in that same database."""
    seen = cast(bindparam("seen_snapshot", type_=Text), _PgSnapshot())
    xid = CLUB_WRITE.c.xid
    unseen: Exists = (
        select(literal(1))
        .where(
            xid >= func.pg_snapshot_xmin(seen),
            ~func.pg_visible_in_snapshot(xid, seen, type_=Boolean),
        )
        .exists()
    )
    return and_(_database_oid() == bindparam("seen_database", type_=Integer), ~unseen)


CHECK = select(still_holds())
READING = select(*reading(bindparam("at", type_=DateTime)))
