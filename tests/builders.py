"""Rows written with plain SQL, as operators and the evaluation platform write them."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime

from sqlalchemy import Connection, Engine, text

_counter = itertools.count(1)


def unique_customer() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


def club(
    db: Engine,
    status_id: int | None = 1,
    effect_date: datetime | None = None,
    sku: int | None = 1234,
    name: str | None = None,
) -> int:
    with db.begin() as conn:
        club_id = conn.execute(
            text("INSERT INTO club (name, store_sku) VALUES (:n, :s) RETURNING id"),
            {"n": name or f"Club {next(_counter)}", "s": sku},
        ).scalar_one()
    if status_id is not None:
        club_status(db, club_id, status_id, effect_date or datetime(2020, 1, 1))
    return club_id


def club_status(
    db: Engine | Connection,
    club_id: int,
    status_id: int,
    effect_date: datetime | None,
    create_date: datetime | None = None,
    row_id: str | None = None,
) -> str:
    """A club status row, committed; on a Connection, in its transaction (the caller ends it)."""
    if isinstance(db, Engine):
        with db.begin() as conn:
            return club_status(conn, club_id, status_id, effect_date, create_date, row_id)
    row_id = row_id or str(uuid.uuid4())
    db.execute(
        text(
            "INSERT INTO club_status_history (id, club_id, club_status_id, effect_date,"
            " create_date) VALUES (:id, :c, :s, :e, :cd)"
        ),
        {"id": row_id, "c": club_id, "s": status_id, "e": effect_date, "cd": create_date},
    )
    return row_id


def subscription(
    db: Engine,
    club_id: int,
    customer: str | None = None,
    status_id: int | None = 1,
    effect_date: datetime | None = None,
    sub_id: str | None = None,
) -> str:
    sub_id = sub_id or str(uuid.uuid4())
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscription (id, club_id, customer_store_id, create_date)"
                " VALUES (:id, :c, :cust, :cd)"
            ),
            {
                "id": sub_id,
                "c": club_id,
                "cust": customer or unique_customer(),
                "cd": datetime(2020, 1, 1),
            },
        )
    if status_id is not None:
        subscription_status(db, sub_id, status_id, effect_date or datetime(2020, 1, 1))
    return sub_id


def subscription_status(
    db: Engine,
    sub_id: str,
    status_id: int | None,
    effect_date: datetime | None,
    create_date: datetime | None = None,
    row_id: str | None = None,
    details: str | None = None,
) -> str:
    row_id = row_id or str(uuid.uuid4())
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
                " effect_date, create_date, details) VALUES (:id, :s, :st, :e, :cd, :d)"
            ),
            {
                "id": row_id,
                "s": sub_id,
                "st": status_id,
                "e": effect_date,
                "cd": create_date,
                "d": details,
            },
        )
    return row_id


def count(db: Engine, table: str, where: str = "TRUE", **params) -> int:
    with db.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar()


def history(db: Engine, sub_id: str) -> list[tuple]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT status_id, effect_date, details FROM subscription_status_history"
                    " WHERE subscription_id = :s ORDER BY effect_date, create_date"
                ),
                {"s": sub_id},
            )
        )


# A schedule in effect from long before any test's clock (revision 0007 stores when a
# schedule changed; the database's own clock is not the tests' pinned one).
SCHEDULE_SINCE = datetime(2000, 1, 1)


def billing_schedule(
    db: Engine,
    club_id: int,
    interval: str = "monthly",
    anniversary: bool = False,
    changed_at: datetime | None = SCHEDULE_SINCE,
) -> None:
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO billing_schedule (club_id, interval, anniversary, changed_at)"
                " VALUES (:c, :i, :a, :w)"
            ),
            {"c": club_id, "i": interval, "a": anniversary, "w": changed_at},
        )


def subscription_started(db: Engine, sub_id: str, create_date: datetime | None) -> None:
    with db.begin() as conn:
        conn.execute(
            text("UPDATE subscription SET create_date = :cd WHERE id = :id"),
            {"cd": create_date, "id": sub_id},
        )


def audit(db: Engine, sub_id: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM billing_audit WHERE subscription_id = :s ORDER BY id"),
            {"s": sub_id},
        ).mappings()
        return [dict(r) for r in rows]
