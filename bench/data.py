"""Benchmark data sets, written with COPY into one database per size on the embedded server.

Per size N: 1,000 clubs (one or two status rows; about 70% ACTIVE, 15% CLOSED, 15% INACTIVE),
N subscriptions with random uuid4-like ids, 1-6 status rows each (3.5 on average, dated in
the past; about 41% end up eligible), and for 10% of them one more row scheduled in the
future. A database built by the same generator version and size is reused.
"""

from __future__ import annotations

import io
import queue
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg2
from sqlalchemy.engine import make_url

from scripts import devdb

VERSION = 2
CLUBS = 1_000
CHUNK = 100_000
SEED = 20261122
# After a first ACTIVE row, later rows are ACTIVE 3 times in 8: with 86% of clubs shipping,
# about 41% of subscriptions are eligible, as in the measurements (408,000 of 1M).
LATER_STATUSES = (1, 1, 1, 2, 2, 2, 3, 3)
# Revision 0002's indexes on the approved tables, dropped during the load and rebuilt after.
SECONDARY_INDEXES = [
    (
        "ix_subscription_status_history_current",
        "subscription_status_history (subscription_id, effect_date DESC,"
        " create_date DESC NULLS LAST, id DESC) INCLUDE (status_id)",
    ),
    ("ix_subscription_club_customer", "subscription (club_id, customer_store_id)"),
]


@dataclass
class DataSet:
    size: int
    url: str  # SQLAlchemy URL
    subscriptions: int
    history_rows: int
    future_rows: int
    built_seconds: float | None  # None: reused from an earlier run
    rebuild_seconds: float | None


def dsn(url: str) -> str:
    """A psycopg2 DSN from a SQLAlchemy URL (keeps ?host=/socket/dir)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: str):
    return psycopg2.connect(dsn(url))


def database_name(size: int) -> str:
    return f"beerclub_bench_{size}"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _date_pool(rng: random.Random, start: datetime, seconds: int, n: int) -> list[str]:
    return sorted(
        (start + timedelta(seconds=rng.randrange(seconds))).isoformat(sep=" ") for _ in range(n)
    )


def _copy(cur, table: str, columns: str, rows: list[str] | str) -> None:
    text = rows if isinstance(rows, str) else "".join(rows)
    cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO(text))


def _clubs(rng: random.Random, past: list[str]) -> tuple[list[str], list[str]]:
    clubs, rows = [], []
    for club_id in range(1, CLUBS + 1):
        clubs.append(f"{club_id}\tClub {club_id}\t{1000 + club_id}\n")
        status = rng.choices([1, 2, 3], weights=[70, 15, 15])[0]
        opened = rng.choice(past[:5000])
        rows.append(f"c{club_id}-1\t{club_id}\t1\t{opened}\t{opened}\topened\n")
        if status != 1:
            when = rng.choice(past[10_000:])
            rows.append(f"c{club_id}-2\t{club_id}\t{status}\t{when}\t{when}\tchanged\n")
    return clubs, rows


def _chunks(rng: random.Random, size: int, past: list[str], future: list[str], now: datetime):
    """(subscription COPY text, history COPY text, history rows, future rows) per chunk."""
    created = past[0]
    choice, randint, sample, rand = rng.choice, rng.randint, rng.sample, rng.random
    for start in range(0, size, CHUNK):
        subs, rows, count_total, future_total = [], [], 0, 0
        for n in range(start, min(size, start + CHUNK)):
            sub = _uuid(rng)
            subs.append(f"{sub}\t{randint(1, CLUBS)}\tcustomer-{n}\t{created}\n")
            count = randint(1, 6)
            for i, when in enumerate(sorted(sample(past, count))):
                status = 1 if i == 0 else choice(LATER_STATUSES)
                rows.append(f"h{n}-{i}\t{sub}\t{status}\t{when}\t{when}\n")
            count_total += count
            if rand() < 0.1:
                rows.append(f"h{n}-f\t{sub}\t{choice((1, 2, 3))}\t{choice(future)}\t{now}\n")
                future_total += 1
        yield "".join(subs), "".join(rows), count_total + future_total, future_total


def generate(conn, size: int, now: datetime, seed: int = SEED) -> tuple[int, int]:
    """Write the data set with COPY; returns (history rows, future rows).

    A thread builds the next chunk's text while the server ingests the current one.
    """
    rng = random.Random(seed + size)  # noqa: S311 - test data, not secrets
    past = _date_pool(rng, now - timedelta(days=3 * 365), 3 * 365 * 86400 - 86400, 20_000)
    future = _date_pool(rng, now + timedelta(days=1), 60 * 86400, 2_000)
    history_total = future_total = 0
    chunks: queue.Queue = queue.Queue(maxsize=2)

    def produce() -> None:
        for chunk in _chunks(rng, size, past, future, now):
            chunks.put(chunk)
        chunks.put(None)

    with conn.cursor() as cur:
        clubs, club_rows = _clubs(rng, past)
        _copy(cur, "club", "id, name, store_sku", clubs)
        cur.execute("SELECT setval('club_id_seq', %s)", (CLUBS,))
        _copy(
            cur,
            "club_status_history",
            "id, club_id, club_status_id, effect_date, create_date, details",
            club_rows,
        )
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        while (chunk := chunks.get()) is not None:
            subs, rows, count, future_count = chunk
            _copy(cur, "subscription", "id, club_id, customer_store_id, create_date", subs)
            _copy(
                cur,
                "subscription_status_history",
                "id, subscription_id, status_id, effect_date, create_date",
                rows,
            )
            history_total += count
            future_total += future_count
        producer.join()
    return history_total, future_total


def _meta(url: str) -> tuple | None:
    try:
        conn = connect(url)
    except psycopg2.Error:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('bench_meta')")
            if cur.fetchone()[0] is None:
                return None
            cur.execute("SELECT version, size, history_rows, future_rows FROM bench_meta")
            return cur.fetchone()
    finally:
        conn.close()


def build(admin_url: str, size: int, migrate, log=print) -> DataSet:
    """The data set of `size` subscriptions, reused when an identical one exists."""
    name = database_name(size)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    meta = _meta(url) if _exists(admin_url, name) else None
    if meta is not None and meta[0] == VERSION and meta[1] == size:
        migrate(url)  # the data is reused; the schema follows the code's revisions
        return DataSet(size, url, size, meta[2], meta[3], None, None)
    devdb.drop_database(admin_url, name)
    devdb.ensure_database(admin_url, name)
    migrate(url)
    started = time.perf_counter()
    conn = connect(url)
    try:
        now = datetime.now(UTC).replace(tzinfo=None)
        with conn.cursor() as cur:
            # A bulk load as a restore does it: no triggers (neither ours nor the foreign-key
            # checks: the generator writes consistent rows), indexes built once at the end,
            # then one rebuild of the cache (timed: operators run the same).
            cur.execute("SET session_replication_role = replica")
            for index, _ in SECONDARY_INDEXES:
                cur.execute(f"DROP INDEX {index}")
        history, future = generate(conn, size, now)
        with conn.cursor() as cur:
            for index, definition in SECONDARY_INDEXES:
                cur.execute(f"CREATE INDEX {index} ON {definition}")
            cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
        rebuild_started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("SELECT subscription_current_status_rebuild()")
        conn.commit()
        rebuild = time.perf_counter() - rebuild_started
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
            cur.execute(
                "CREATE TABLE bench_meta AS SELECT %s AS version, %s AS size,"
                " %s AS history_rows, %s AS future_rows",
                (VERSION, size, history, future),
            )
    finally:
        conn.close()
    built = time.perf_counter() - started
    log(f"built {size:,} subscriptions, {history:,} history rows in {built:.1f} s")
    return DataSet(size, url, size, history, future, built, rebuild)


def _exists(admin_url: str, name: str) -> bool:
    conn = psycopg2.connect(dsn(admin_url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()
