"""The cache's triggers add no lock that plain SQL writers could wait on or deadlock over.

Without our triggers two transactions that each write history for subscriptions A and B,
in opposite orders, both commit (history rows only take shared key locks). They must
still both commit with the triggers in place.
"""

from __future__ import annotations

import threading
from datetime import datetime

import psycopg2
from sqlalchemy.engine import make_url

from handlers import eligible
from tests import builders
from tests.events import api_event, invoke


def connect(database_url: str):
    url = make_url(database_url)
    conn = psycopg2.connect(
        dbname=url.database,
        user=url.username,
        password=url.password,
        host=url.host or url.query.get("host"),
        port=url.port,
    )
    conn.autocommit = False
    with conn.cursor() as cur:
        # Fail fast instead of hanging if a lock wait appears; deadlocks are found in 1 s.
        cur.execute("SET lock_timeout = '5s'")
    return conn


def insert_history(conn, sub_id: str, status_id: int) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO subscription_status_history (id, subscription_id, status_id,"
            " effect_date, create_date) VALUES (gen_random_uuid()::text, %s, %s,"
            " '2026-01-01', now())",
            (sub_id, status_id),
        )


def test_writers_crossing_subscriptions_in_opposite_orders_both_commit(db, database_url, now):
    # Given two subscriptions and two operators' transactions
    club = builders.club(db)
    a, b = builders.subscription(db, club), builders.subscription(db, club)
    first, second = connect(database_url), connect(database_url)
    errors: list[Exception] = []
    try:
        # When each writes one subscription, then the other's, in opposite orders
        insert_history(first, a, 3)
        insert_history(second, b, 3)

        def cross():
            try:
                insert_history(first, b, 2)
                first.commit()
            except psycopg2.Error as exc:
                errors.append(exc)
                first.rollback()

        crossing = threading.Thread(target=cross)
        crossing.start()
        try:
            insert_history(second, a, 2)
            second.commit()
        except psycopg2.Error as exc:
            errors.append(exc)
            second.rollback()
        crossing.join(timeout=30)
    finally:
        first.close()
        second.close()
    # Then neither failed, and the endpoint sees what both wrote
    assert errors == []
    now(datetime(2026, 11, 21, 12))
    status, body, _ = invoke(eligible.lambda_handler, api_event("GET", "/subscription/eligible"))
    assert status == 200
    assert a not in body
    assert b not in body
