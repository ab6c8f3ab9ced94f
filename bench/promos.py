"""Flash promos at scale (issue 17): a million customer profiles around 200 stores and 1,000
running promos, in a database of their own (reused when the same generator built it).

Measured, through the real handlers and repositories in this process:
- eligible promos for one customer: warm GET /promos/eligible handler calls, p50 and p99,
  next to the same query called without the handler (the baseline);
- the audience of a 5 km promo in the dense city, streamed by the announcer's server-side
  cursor (queue sends excluded), next to the same selection without the bounding box;
- contention: 500 reservations from 50 threads on a one-unit promo, and 2,000 customers
  against 1,000 units (pool of at most 50 connections), plotted.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from bench import data
from scripts import devdb

VERSION = 1
STORES = 200
PROMOS_PER_STORE = 5
SEED = 20261201
DENSE_CITY = (38.7223, -9.1393)  # store 1: Lisbon
DENSE_SHARE = 0.075  # of the profiles live within 4.9 km of store 1
SEGMENTS = ["beer-lovers", "ipa", "stout", "lager", "sour", "wine", "cider", "spirits"]
EARTH_KM = 6371.0088
PLOT = "docs/promos-contention.png"
THREADS = 50


def database_name(size: int) -> str:
    return f"beerclub_bench_promos_{size}"


def _point_near(rng: random.Random, lat: float, lon: float, km: float) -> tuple[float, float]:
    """A uniform point in the disc of `km` around (lat, lon)."""
    distance = km * math.sqrt(rng.random()) / EARTH_KM
    bearing = rng.random() * 2 * math.pi
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(
        math.sin(p1) * math.cos(distance) + math.cos(p1) * math.sin(distance) * math.cos(bearing)
    )
    l2 = l1 + math.atan2(
        math.sin(bearing) * math.sin(distance) * math.cos(p1),
        math.cos(distance) - math.sin(p1) * math.sin(p2),
    )
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def dense_count(size: int) -> int:
    return min(size, max(int(size * DENSE_SHARE), 2_600))


def _segments(rng: random.Random) -> str:
    chosen = {"beer-lovers"} if rng.random() < 0.8 else set()
    chosen.update(rng.sample(SEGMENTS[1:], rng.randint(0 if chosen else 1, 2)))
    return "{" + ",".join(sorted(chosen)) + "}"


def generate(conn, size: int, now: datetime) -> None:
    rng = random.Random(SEED + size)  # noqa: S311 - test data
    stores = [(1, *DENSE_CITY)] + [
        (n, rng.uniform(-55, 65), rng.uniform(-180, 180)) for n in range(2, STORES + 1)
    ]
    with conn.cursor() as cur:
        data._copy(
            cur,
            "store",
            "id, name, latitude, longitude",
            [f"{n}\tStore {n}\t{lat}\t{lon}\n" for n, lat, lon in stores],
        )
        dense = dense_count(size)
        chunk: list[str] = []
        for n in range(size):
            if n < dense:
                lat, lon = _point_near(rng, *DENSE_CITY, 4.9)
            else:
                _, slat, slon = stores[rng.randrange(STORES)]
                lat, lon = _point_near(rng, slat, slon, 20)
            chunk.append(f"p-{n}\t{lat:.6f}\t{lon:.6f}\t{_segments(rng)}\n")
            if len(chunk) == 100_000:
                data._copy(
                    cur, "customer_profile", "customer_id, latitude, longitude, segments", chunk
                )
                chunk = []
        if chunk:
            data._copy(cur, "customer_profile", "customer_id, latitude, longitude, segments", chunk)
        promos = []
        starts, ends = now - timedelta(hours=1), now + timedelta(days=365)
        for store_id, _, _ in stores:
            for k in range(PROMOS_PER_STORE):
                promo_id = len(promos) + 1
                if promo_id == 1:  # the audience promo: 5 km in the dense city
                    radius, segs, units = 5.0, "{beer-lovers}", 1000
                else:
                    radius = round(rng.uniform(1, 20), 1)
                    segs = "{" + ",".join(sorted(rng.sample(SEGMENTS, rng.randint(1, 3)))) + "}"
                    units = rng.randint(1, 1000)
                promos.append(
                    f"{promo_id}\t{store_id}\t{5000 + k}\t9.90\t{units}\t{segs}\t{radius}"
                    f"\t{starts}\t{ends}\t{now}\n"
                )
        # announced_at is set: the bench's announcer runs measure the audience only.
        data._copy(
            cur,
            "promo",
            "id, store_id, sku, unit_price, units, segments, radius_km, starts_at, ends_at,"
            " announced_at",
            promos,
        )
        cur.execute("SELECT setval(pg_get_serial_sequence('store', 'id'), max(id)) FROM store")
        cur.execute("SELECT setval(pg_get_serial_sequence('promo', 'id'), max(id)) FROM promo")


def build(admin_url: str, size: int, migrate, log=print) -> tuple[str, float | None]:
    """The database URL, and how long it took to build (None: reused)."""
    name = database_name(size)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    if data._exists(admin_url, name):
        conn = data.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('promo_bench_meta')")
                if cur.fetchone()[0] is not None:
                    cur.execute("SELECT version, size FROM promo_bench_meta")
                    if cur.fetchone() == (VERSION, size):
                        migrate(url)
                        return url, None
        finally:
            conn.close()
    devdb.drop_database(admin_url, name)
    devdb.ensure_database(admin_url, name)
    migrate(url)
    started = time.perf_counter()
    conn = data.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP INDEX customer_profile_position")
        generate(conn, size, datetime.now(UTC).replace(tzinfo=None))
        with conn.cursor() as cur:
            cur.execute(
                "CREATE INDEX customer_profile_position ON customer_profile (latitude, longitude)"
                " INCLUDE (customer_id, segments)"
            )
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
            cur.execute(
                "CREATE TABLE promo_bench_meta AS SELECT %s AS version, %s AS size",
                (VERSION, size),
            )
    finally:
        conn.close()
    built = time.perf_counter() - started
    log(f"built {size:,} customer profiles, {STORES} stores, 1,000 promos in {built:.1f} s")
    return url, built


def _use(url: str) -> None:
    """Point the handlers at the data set, with a pool of at most 50 connections."""
    from common import settings
    from repositories import database

    os.environ["DATABASE_URL"] = url
    os.environ["DB_POOL_SIZE"] = "40"
    os.environ["DB_MAX_OVERFLOW"] = "10"
    os.environ.pop("API_KEY", None)
    settings.get.cache_clear()
    database.reset()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def measure_eligible(size: int, calls: int) -> dict:
    from common import clock
    from domain import promos
    from handlers import promos_eligible
    from repositories.unit_of_work import SqlAlchemyUnitOfWork
    from tests.events import LambdaContext, api_event

    rng = random.Random(SEED)  # noqa: S311
    customers = [f"p-{rng.randrange(size)}" for _ in range(calls)]
    context = LambdaContext()
    handler_ms, query_ms, found = [], [], []
    for n, customer in enumerate(customers[:50] + customers):
        event = api_event("GET", "/promos/eligible", query={"customer_id": customer})
        started = time.perf_counter()
        answer = promos_eligible.lambda_handler(event, context)
        elapsed = (time.perf_counter() - started) * 1000
        assert answer["statusCode"] == 200, answer["body"]
        started = time.perf_counter()
        listed = promos.eligible(SqlAlchemyUnitOfWork(), customer, clock.now())
        baseline = (time.perf_counter() - started) * 1000
        if n >= 50:  # after the warm-up
            handler_ms.append(elapsed)
            query_ms.append(baseline)
            found.append(len(listed))
    return {
        "calls": calls,
        "p50_ms": statistics.median(handler_ms),
        "p99_ms": _percentile(handler_ms, 99),
        "query_p50_ms": statistics.median(query_ms),
        "query_p99_ms": _percentile(query_ms, 99),
        "promos_per_customer": statistics.mean(found),
    }


def measure_audience(url: str, repeat: int) -> dict:
    from sqlalchemy import text

    from repositories import database
    from repositories.promo_notifications import SqlAlchemyPromoNotificationRepository
    from repositories.promos import SqlAlchemyPromoRepository

    full_scan = text(
        "SELECT customer_id FROM customer_profile c WHERE c.segments && CAST(:s AS text[])"
        " AND 2 * 6371.0088 * asin(least(1, sqrt(power(sin(radians(c.latitude - :lat) / 2), 2)"
        " + cos(radians(:lat)) * cos(radians(c.latitude))"
        " * power(sin(radians(c.longitude - :lon) / 2), 2)))) <= :r"
    )
    with database.engine().connect() as conn:
        promo = SqlAlchemyPromoRepository(conn).promo(1)
        repo = SqlAlchemyPromoNotificationRepository(conn)
        times, baseline_times, count, baseline_count = [], [], 0, 0
        for _ in range(repeat + 1):
            started = time.perf_counter()
            count = sum(len(ids) for ids in repo.audience(promo, 200))
            times.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = conn.execute(
                full_scan,
                {
                    "s": list(promo.segments),
                    "lat": promo.store_latitude,
                    "lon": promo.store_longitude,
                    "r": promo.radius_km + 1e-6,
                },
                execution_options={"stream_results": True, "max_row_buffer": 5000},
            )
            baseline_count = sum(len(rows) for rows in result.partitions(5000))
            baseline_times.append(time.perf_counter() - started)
            conn.rollback()
    seconds = statistics.median(times[1:])
    baseline = statistics.median(baseline_times[1:])
    return {
        "customers": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "full_scan_customers": baseline_count,
        "full_scan_seconds": baseline,
    }


def contention(customers: list[str], units: int) -> dict:
    """`len(customers)` reservations from 50 threads on a new promo of `units` units."""
    from sqlalchemy import text

    from handlers import promos_reserve
    from repositories import database
    from tests.events import LambdaContext, api_event

    with database.engine().begin() as conn:
        promo = conn.execute(
            text(
                "INSERT INTO promo (store_id, sku, unit_price, units, radius_km, starts_at,"
                " ends_at, announced_at) VALUES (1, 9999, 1.00, :u, 5, now() AT TIME ZONE 'utc'"
                " - interval '1 minute', now() AT TIME ZONE 'utc' + interval '1 hour',"
                " now() AT TIME ZONE 'utc') RETURNING id"
            ),
            {"u": units},
        ).scalar_one()
    context = LambdaContext()
    barrier = threading.Barrier(THREADS)
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    chunks = [customers[n::THREADS] for n in range(THREADS)]
    origin = time.perf_counter()

    def worker(mine: list[str]) -> None:
        barrier.wait()
        for customer in mine:
            event = api_event(
                "POST", "/promos/{id}/reservations", {"id": str(promo)}, {"customer_id": customer}
            )
            started = time.perf_counter()
            status = promos_reserve.lambda_handler(event, context)["statusCode"]
            ended = time.perf_counter()
            with lock:
                results.append((started - origin, (ended - started) * 1000, status))

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, chunks))
    elapsed = time.perf_counter() - started
    with database.engine().begin() as conn:
        held = conn.execute(
            text(
                "SELECT count(*) FROM promo_unit WHERE promo_id = :p AND reservation_id IS NOT NULL"
            ),
            {"p": promo},
        ).scalar_one()
        reservations = conn.execute(
            text("SELECT count(*) FROM promo_reservation WHERE promo_id = :p"), {"p": promo}
        ).scalar_one()
        conn.execute(text("DELETE FROM promo WHERE id = :p"), {"p": promo})
    statuses = [status for _, _, status in results]
    return {
        "requests": len(customers),
        "units": units,
        "threads": THREADS,
        "seconds": elapsed,
        "created": statuses.count(201),
        "refused_409": statuses.count(409),
        "server_errors": sum(1 for s in statuses if s >= 500),
        "other": sum(1 for s in statuses if s not in (201, 409) and s < 500),
        "units_held": held,
        "reservations": reservations,
        "p50_ms": statistics.median(ms for _, ms, _ in results),
        "p99_ms": _percentile([ms for _, ms, _ in results], 99),
        "points": results,
    }


def measure(admin_url: str, size: int, migrate, repeat: int, log=print) -> dict:
    url, built = build(admin_url, size, migrate, log)
    previous = os.environ.get("DATABASE_URL")
    _use(url)
    try:
        log("promos: eligible")
        eligible = measure_eligible(size, 1000)
        log("promos: audience")
        audience = measure_audience(url, max(repeat, 3))
        log("promos: contention")
        dense = [f"p-{n}" for n in range(dense_count(size))]
        one_unit = contention(dense[:500], 1)
        thousand = contention(dense[500:2500], 1000)
    finally:
        if previous is not None:
            os.environ["DATABASE_URL"] = previous
    return {
        "profiles": size,
        "stores": STORES,
        "promos": STORES * PROMOS_PER_STORE,
        "built_seconds": built,
        "eligible": eligible,
        "audience": audience,
        "one_unit": one_unit,
        "thousand_units": thousand,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    runs = [
        ("one_unit", "500 customers, 1 unit"),
        ("thousand_units", "2,000 customers, 1,000 units"),
    ]
    colours = {201: "tab:green", 409: "tab:orange"}
    for ax, (key, title) in zip(axes, runs, strict=True):
        run = result[key]
        for status in sorted({s for _, _, s in run["points"]}):
            points = [(t * 1000, ms) for t, ms, s in run["points"] if s == status]
            ax.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                s=6,
                color=colours.get(status, "tab:red"),
                label=f"{status} ({len(points):,})",
            )
        ax.set_title(f"{title}: {run['seconds']:.2f} s, {run['threads']} threads")
        ax.set_xlabel("request start (ms since the first)")
        ax.legend()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    fig.suptitle("POST /promos/{id}/reservations under contention (in-process handler calls)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict) -> tuple[list[str], dict[str, bool | None]]:
    e, a = result["eligible"], result["audience"]
    one, many = result["one_unit"], result["thousand_units"]
    at_scale = result["profiles"] >= 1_000_000
    built = result["built_seconds"]
    lines = [
        "",
        "## Flash promos",
        "",
        f"{result['profiles']:,} customer profiles around {result['stores']} stores"
        f" ({dense_count(result['profiles']):,} of them within 4.9 km of store 1, the dense"
        f" city) and {result['promos']:,} running promos (radius 1-20 km, 1-1,000 units, 1-3"
        " of 8 segments), generated by `bench/promos.py`"
        + (" (reused)." if built is None else f" in {built:.0f} s."),
        "",
        "| measurement | result | baseline |",
        "|---|---:|---:|",
        f"| GET /promos/eligible, {e['calls']:,} warm handler calls (random customers,"
        f" {e['promos_per_customer']:.1f} promos each) | p50 {e['p50_ms']:.2f} ms,"
        f" p99 {e['p99_ms']:.2f} ms | query alone: p50 {e['query_p50_ms']:.2f} ms,"
        f" p99 {e['query_p99_ms']:.2f} ms |",
        f"| audience of the 5 km promo in the dense city (server-side cursor, no queue) |"
        f" {a['customers']:,} customers in {a['seconds'] * 1000:.0f} ms ="
        f" {a['per_second']:,.0f}/s | without the bounding box:"
        f" {a['full_scan_seconds'] * 1000:.0f} ms |",
    ]
    for run, title in ((one, "one unit"), (many, "1,000 units")):
        lines.append(
            f"| {run['requests']:,} reservations from {run['threads']} threads, {title} |"
            f" {run['created']:,} holds, {run['refused_409']:,} 409, {run['server_errors']}"
            f" 5xx, {run['units_held']:,} units held, in {run['seconds']:.2f} s (p50"
            f" {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms) | |"
        )
    lines += ["", f"![reservations under contention]({PLOT})", ""]
    goals: dict[str, bool | None] = {
        "17. promos: eligible p50 <= 10 ms at 1M profiles": (
            e["p50_ms"] <= 10 if at_scale else None
        ),
        "17. promos: eligible p99 <= 50 ms at 1M profiles": (
            e["p99_ms"] <= 50 if at_scale else None
        ),
        "17. promos: 5 km audience >= 50,000 customers at >= 200,000/s": (
            a["customers"] >= 50_000 and a["per_second"] >= 200_000 if at_scale else None
        ),
        "17. promos: one unit, 500 requests: 1 hold, 499 409s, no 5xx": (
            one["created"] == 1
            and one["refused_409"] == 499
            and one["units_held"] == 1
            and one["reservations"] == 1
        ),
        "17. promos: 1,000 units, 2,000 customers: exactly 1,000 holds, no 5xx": (
            many["created"] == 1000
            and many["refused_409"] == 1000
            and many["units_held"] == 1000
            and many["reservations"] == 1000
        ),
    }
    return lines, goals
