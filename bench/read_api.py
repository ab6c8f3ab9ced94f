"""The website's read API at size: the median of 200 warm in-process handler calls of
GET /clubs, GET /club/{id} and GET /subscription/{id}, each call timed on its own, with
different clubs and subscriptions (a random sample, the same in every run), next to a bare
psycopg2 primary-key lookup of a subscription (the floor of any read). GET /clubs is also
timed with the list read afresh, as after a write to the clubs (the container's last list
no longer holds, docs/api.md)."""

from __future__ import annotations

import random
import statistics
import time

from bench import data

CALLS = 200
WARMUP = 20


def _timed(fn, arguments: list) -> tuple[float, list[int]]:
    """Median seconds of one call per argument, and the statuses answered."""
    times, statuses = [], []
    for argument in arguments:
        started = time.perf_counter()
        statuses.append(fn(argument))
        times.append(time.perf_counter() - started)
    return statistics.median(times), statuses


def measure(dataset: data.DataSet, calls: int = CALLS) -> dict:
    from bench.eligible import use_database
    from handlers import club, clubs, subscription
    from tests.events import LambdaContext, api_event

    use_database(dataset.url)
    conn = data.connect(dataset.url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM subscription ORDER BY id")
            every = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT id FROM club ORDER BY id")
            club_ids = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    rng = random.Random(20261201)  # noqa: S311 - a reproducible sample, not a secret
    subs = rng.sample(every, calls + WARMUP)
    del every
    clubs_sample = [rng.choice(club_ids) for _ in range(calls + WARMUP)]
    context = LambdaContext()

    def read_subscription(sub: str) -> int:
        event = api_event("GET", "/subscription/{id}", path_parameters={"id": sub})
        return subscription.lambda_handler(event, context)["statusCode"]

    def read_club(club_id: int) -> int:
        event = api_event("GET", "/club/{id}", path_parameters={"id": str(club_id)})
        return club.lambda_handler(event, context)["statusCode"]

    def list_clubs(status: str) -> int:
        event = api_event("GET", "/clubs", query={"status": status})
        return clubs.lambda_handler(event, context)["statusCode"]

    def list_clubs_afresh(status: str) -> int:
        # As after a write to the clubs: the container's last list no longer holds.
        from repositories import views

        views._CLUBS_READ.clear()
        return list_clubs(status)

    bare_conn = data.connect(dataset.url)

    def bare(sub: str) -> int:
        with bare_conn.cursor() as cur:
            cur.execute(
                "SELECT id, club_id, customer_store_id FROM subscription WHERE id = %s", (sub,)
            )
            cur.fetchone()
        bare_conn.rollback()
        return 200

    try:
        # Warm every path (statements compiled, pool connected, pages cached), then measure.
        for sub, club_id in zip(subs[:WARMUP], clubs_sample[:WARMUP], strict=True):
            read_subscription(sub), read_club(club_id), list_clubs("ACTIVE"), bare(sub)
        results = {}
        for name, fn, arguments in (
            ("subscription", read_subscription, subs[WARMUP:]),
            ("club", read_club, clubs_sample[WARMUP:]),
            ("clubs", list_clubs, ["ACTIVE"] * calls),
            ("clubs_afresh", list_clubs_afresh, ["ACTIVE"] * calls),
            ("bare_lookup", bare, subs[WARMUP:]),
        ):
            median, statuses = _timed(fn, arguments)
            results[name] = {"median_s": median, "ok": statuses.count(200)}
    finally:
        bare_conn.close()
    return {"size": dataset.size, "calls": calls, **results}
