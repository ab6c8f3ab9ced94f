"""Charge overhead: 1,000 sequential charges of different subscriptions through the handler,
against the local fake platform, next to a bare psycopg2 + requests loop doing the same
database work (the eligibility read, the ledger row, its attempt and its audit row
committed before the call, the call, the outcome and its audit row recorded and
committed)."""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, datetime

import requests

from bench import data
from bench.timing import interleaved_medians

KEY = "https://example.test/beer-club.git"
SECRET = "bench-secret"  # noqa: S105 - the local fake's, nothing real

TARGET = """
SELECT s.id, s.customer_store_id, c.store_sku,
  (SELECT h.status_id FROM subscription_status_history h
    WHERE h.subscription_id = s.id AND h.effect_date <= %(now)s
    ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC LIMIT 1),
  (SELECT h.club_status_id FROM club_status_history h
    WHERE h.club_id = s.club_id AND h.effect_date <= %(now)s
    ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC LIMIT 1)
FROM subscription s LEFT JOIN club c ON c.id = s.club_id WHERE s.id = %(id)s
"""


AUDIT = (
    "INSERT INTO billing_audit (action, actor, occurred_at, subscription_id, customer_store_id,"
    " period, charge_id, request_id, details) VALUES (%s, 'bench', %s, %s, %s, %s, %s, %s, %s)"
)


def bare_loop(url: str, base_url: str, ids: list[str]) -> int:
    conn = data.connect(url)
    session = requests.Session()
    headers = {"x-api-key": KEY, "x-api-secret": SECRET}
    placed = 0
    try:
        with conn.cursor() as cur:
            for sub in ids:
                now = datetime.now(UTC).replace(tzinfo=None)
                period = now.strftime("%Y-%m")
                request_id = str(uuid.uuid4())
                cur.execute(TARGET, {"now": now, "id": sub})
                _, customer, sku, status, club_status = cur.fetchone()
                if status != 1 or club_status not in (1, 2):
                    continue
                cur.execute(
                    "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                    " customer_store_id, store_sku, created_at, updated_at, last_attempt_at)"
                    " VALUES (%s, %s, %s, 'pending', 1, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (subscription_id, period) DO NOTHING RETURNING id",
                    (sub, period, request_id, customer, sku, now, now, now),
                )
                charge_id = cur.fetchone()[0]
                cur.execute(
                    "INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at)"
                    " VALUES (%s, 1, %s, %s)",
                    (charge_id, request_id, now),
                )
                cur.execute(
                    AUDIT,
                    (
                        "charge_attempt",
                        now,
                        sub,
                        customer,
                        period,
                        charge_id,
                        request_id,
                        "attempt 1",
                    ),
                )
                conn.commit()
                answer = session.post(
                    f"{base_url}/order/{request_id}",
                    json={"customer_id": customer, "sku_id": sku},
                    headers=headers,
                    timeout=10,
                )
                done = datetime.now(UTC).replace(tzinfo=None)
                state = "succeeded" if answer.ok else "failed"
                cur.execute(
                    "UPDATE charge_attempt SET finished_at = %s, outcome = %s,"
                    " platform_status = %s, platform_body = %s"
                    " WHERE charge_id = %s AND attempt = 1",
                    (done, state, answer.status_code, answer.text, charge_id),
                )
                cur.execute(
                    "UPDATE charge SET state = %s, platform_status = %s, platform_body = %s,"
                    " updated_at = %s WHERE id = %s AND attempts = 1 AND state = 'pending'",
                    (state, answer.status_code, answer.text, done, charge_id),
                )
                cur.execute(
                    AUDIT,
                    (
                        "charge_outcome",
                        done,
                        sub,
                        None,
                        period,
                        charge_id,
                        request_id,
                        f"attempt 1: {state}",
                    ),
                )
                conn.commit()
                placed += answer.ok
    finally:
        conn.close()
        session.close()
    return placed


def through_handler(ids: list[str]) -> int:
    from handlers import charge
    from tests.events import LambdaContext, api_event

    placed = 0
    for sub in ids:
        event = api_event(
            "POST",
            "/subscription/{id}/charge/{request_id}",
            path_parameters={"id": sub, "request_id": str(uuid.uuid4())},
        )
        placed += 200 <= charge.lambda_handler(event, LambdaContext())["statusCode"] < 300
    return placed


def clear_ledger(url: str) -> None:
    conn = data.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("TRUNCATE charge, charge_attempt, platform_request CASCADE")
        conn.commit()
    finally:
        conn.close()


def measure(dataset: data.DataSet, ids: list[str], repeat: int) -> dict:
    from common import settings
    from fake_ecommerce import server
    from handlers import charge

    with server.start(api_key=KEY, api_secret=SECRET, log_stream=io.StringIO()) as platform:
        os.environ.update(
            ECOMM_BASE_URL=platform.base_url, ECOMM_API_KEY=KEY, ECOMM_API_SECRET=SECRET
        )
        settings.get.cache_clear()
        charge.platform.cache_clear()
        from bench.eligible import use_database

        use_database(dataset.url)

        def ours() -> int:
            clear_ledger(dataset.url)
            platform.reset()
            return through_handler(ids)

        def bare() -> int:
            clear_ledger(dataset.url)
            platform.reset()
            return bare_loop(dataset.url, platform.base_url, ids)

        # Warm both paths, then alternate them run by run, so machine noise hits both alike.
        clear_ledger(dataset.url)
        through_handler(ids[:20])
        clear_ledger(dataset.url)
        bare_loop(dataset.url, platform.base_url, ids[:20])
        medians = interleaved_medians({"ours": ours, "bare": bare}, repeat, warmup=0)
        handler_s, placed = medians["ours"]
        bare_s, bare_placed = medians["bare"]
        clear_ledger(dataset.url)
    return {
        "charges": len(ids),
        "handler_s": handler_s,
        "bare_s": bare_s,
        "placed": placed,
        "bare_placed": bare_placed,
    }
