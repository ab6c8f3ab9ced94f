"""Load demo clubs and subscriptions, in every status, into an empty database.

    python -m scripts.demo_data          # uses DATABASE_URL or the scope file, like the API

Written with plain SQL, as operators write; does nothing when any club exists.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from common import clock
from repositories import database
from scripts import promo_demo_data

# (id, name, sku, status history as (status, days from now))
CLUBS = [
    (1, "Hop Heads IPA Club", 1001, [(1, -400)]),
    (2, "Stout Society", 1002, [(1, -300)]),
    (3, "Old Ales (closed to new members)", 1003, [(1, -500), (2, -30)]),
    (4, "Pilsner Pals (retired)", 1004, [(1, -600), (3, -60)]),
    (5, "Sour Hour (opens next week)", 1005, [(1, 7)]),
]

# (id, club, customer, status history as (status, days from now, details))
SUBSCRIPTIONS = [
    ("demo-sub-active-1", 1, "demo-customer-1", [(1, -200, "Subscription created")]),
    ("demo-sub-active-2", 1, "demo-customer-2", [(1, -100, "Subscription created")]),
    ("demo-sub-active-3", 2, "demo-customer-1", [(1, -50, "Subscription created")]),
    (
        "demo-sub-cancelled",
        1,
        "demo-customer-3",
        [(1, -200, "Subscription created"), (2, -20, "Customer asked to cancel")],
    ),
    (
        "demo-sub-paused",
        2,
        "demo-customer-4",
        [(1, -90, "Subscription created"), (3, -10, "Paused until further notice")],
    ),
    (
        "demo-sub-returning",
        1,
        "demo-customer-5",
        [
            (1, -150, "Subscription created"),
            (3, -5, "On holiday"),
            (1, 25, "Automatic return schedule"),
        ],
    ),
    ("demo-sub-closed-club", 3, "demo-customer-6", [(1, -100, "Subscription created")]),
    ("demo-sub-retired-club", 4, "demo-customer-7", [(1, -100, "Subscription created")]),
]


def load(conn: Connection, now: datetime) -> bool:
    if conn.scalar(text("SELECT EXISTS (SELECT 1 FROM club)")):
        return False
    for club_id, name, sku, history in CLUBS:
        conn.execute(
            text("INSERT INTO club (id, name, store_sku) VALUES (:i, :n, :s)"),
            {"i": club_id, "n": name, "s": sku},
        )
        for n, (status, days) in enumerate(history):
            conn.execute(
                text(
                    "INSERT INTO club_status_history (id, club_id, club_status_id, effect_date,"
                    " create_date, details) VALUES (:id, :c, :s, :e, :cd, 'demo data')"
                ),
                {
                    "id": f"demo-club-{club_id}-{n}",
                    "c": club_id,
                    "s": status,
                    "e": now + timedelta(days=days),
                    "cd": now + timedelta(days=min(days, 0)),
                },
            )
    conn.execute(text("SELECT setval(pg_get_serial_sequence('club', 'id'), max(id)) FROM club"))
    for sub_id, club_id, customer, history in SUBSCRIPTIONS:
        conn.execute(
            text(
                "INSERT INTO subscription (id, club_id, customer_store_id, create_date)"
                " VALUES (:i, :c, :cu, :cd)"
            ),
            {"i": sub_id, "c": club_id, "cu": customer, "cd": now + timedelta(days=history[0][1])},
        )
        for n, (status, days, details) in enumerate(history):
            conn.execute(
                text(
                    "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
                    " effect_date, create_date, details) VALUES (:id, :s, :st, :e, :cd, :d)"
                ),
                {
                    "id": f"{sub_id}-{n}",
                    "s": sub_id,
                    "st": status,
                    "e": now + timedelta(days=days),
                    "cd": now + timedelta(days=min(days, -5)),
                    "d": details,
                },
            )
    return True


# A scheduled club change (docs/club-changes.md): demo-customer-2 moves from club 1 to
# club 2 at the next period, through the API's own code (its rows and claim are the API's).
CLUB_CHANGE = ("demo-sub-active-2", 2)


def schedule_club_change(now: datetime) -> None:
    from domain import club_change_model, club_changes
    from repositories.unit_of_work import SqlAlchemyUnitOfWork

    subscription_id, club_id = CLUB_CHANGE
    club_changes.request_change(
        SqlAlchemyUnitOfWork(), club_change_model.ChangeRequest(subscription_id, club_id), now
    )


def main() -> int:
    now = clock.now()
    with database.engine().begin() as conn:
        loaded = load(conn, now)
        promos_loaded = promo_demo_data.load(conn, now)  # flash promos
    if loaded:
        schedule_club_change(now)
    print("demo data loaded" if loaded else "database not empty: demo data not loaded")
    if promos_loaded:
        print("promo demo data loaded (store 1, promos 1 and 2; see docs/promos.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
