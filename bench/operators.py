"""The operators' desk in `make bench`: one subscription's view row at the largest data
set, against the bare rule query for the same subscription; and simulated months of
billing (6 months of 1,000 subscriptions, the goal; 1 month of 10,000, reported)."""

from __future__ import annotations

import random
import statistics
import time
from datetime import date

from sqlalchemy.engine import make_url

from bench import data

LOOKUPS = 200
RULE = (
    "SELECT status_id FROM subscription_status_history WHERE subscription_id = %s"
    " AND effect_date <= now() AT TIME ZONE 'utc'"
    " ORDER BY effect_date DESC, create_date DESC NULLS LAST, id DESC LIMIT 1"
)
VIEW = "SELECT * FROM subscription_now WHERE subscription_id = %s"
TIMELINE = "SELECT * FROM member_timeline WHERE subscription_id = %s ORDER BY at"
# Subscriptions x months. Six months of 10,000 would take about six times the one month
# reported (25 minutes on the shared 2-core machine): OPS_BENCH_SIMULATIONS=10000x6 runs it.
SIMULATIONS = ((1_000, 6), (10_000, 1))
# The empty, migrated database each simulation's sandbox is copied from.
SOURCE = "beerclub_bench_sim_source"


def _simulations() -> tuple[tuple[int, int], ...]:
    import os

    given = os.environ.get("OPS_BENCH_SIMULATIONS")
    if not given:
        return SIMULATIONS
    return tuple(
        (int(size), int(months))
        for size, months in (item.split("x") for item in given.split(",") if item)
    )


def lookups(url: str, repeat: int) -> dict:
    """Median and p95 of single-subscription reads, each query taking turns with the rule."""
    conn = data.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM subscription TABLESAMPLE SYSTEM (1) LIMIT 5000")
            ids = [row[0] for row in cur.fetchall()]
            chosen = random.Random(16).sample(ids, min(LOOKUPS, len(ids)))  # noqa: S311
            timings: dict[str, list[float]] = {"rule": [], "view": [], "timeline": []}
            for _ in range(max(repeat // 2, 1)):
                for sub in chosen:
                    for name, sql in (("rule", RULE), ("view", VIEW), ("timeline", TIMELINE)):
                        started = time.perf_counter()
                        cur.execute(sql, (sub,))
                        cur.fetchall()
                        timings[name].append((time.perf_counter() - started) * 1000)
            conn.rollback()
    finally:
        conn.close()
    result = {"lookups": len(chosen)}
    for name, values in timings.items():
        values.sort()
        result[f"{name}_median_ms"] = statistics.median(values)
        result[f"{name}_p95_ms"] = values[int(len(values) * 0.95) - 1]
    return result


def simulations(admin_url: str, migrate, log) -> list[dict]:
    from datetime import timedelta as td

    from ops import simulation
    from scripts import devdb

    source = devdb.ensure_database(admin_url, SOURCE)
    migrate(source)
    found = []
    for subscriptions, months in _simulations():
        scenario = simulation.Scenario.from_dict(
            {
                "seed": 16,
                "clubs": 10,
                "subscriptions": subscriptions,
                "decline_rate": 0.05,
                "payment_failure_rate": 0.01,
                "outage_days": ["2026-12-02"],
                "late_webhook_rate": 0.1,
                "duplicate_webhook_rate": 0.05,
                "card_reports": [{"day": "2026-12-20", "count": subscriptions // 100}],
                "pauses": [{"day": "2026-12-10", "count": subscriptions // 50, "days": 30}],
                "club_changes": [
                    {
                        "day": "2026-12-15",
                        "count": subscriptions // 100,
                        "to_club": "Simulated club 2",
                    }
                ],
            }
        )
        started = time.perf_counter()
        sandbox = simulation.copy(source)
        copied = time.perf_counter() - started
        try:
            report = simulation.simulate(
                sandbox, date(2026, 12, 1), months, scenario, td(seconds=60), td(days=5)
            )
        finally:
            simulation.drop(sandbox)
        result = {
            "subscriptions": subscriptions,
            "months": months,
            "days": report.days,
            "copy_seconds": copied,
            "seconds": report.seconds,
            "charged": sum(m.charged for m in report.months.values()),
            "cancelled": sum(m.cancelled for m in report.months.values()),
            "forecast_agreed": sum(m.forecast_agreed for m in report.months.values()),
            "double_charges": report.double_charges,
            "database": make_url(sandbox).database,
        }
        log(f"simulation {subscriptions:,} x {months} months: {report.seconds:.0f} s")
        found.append(result)
    return found


def measure(admin_url: str, biggest_url: str, repeat: int, migrate, log) -> dict:
    return {
        "size_url_db": make_url(biggest_url).database,
        "lookups": lookups(biggest_url, repeat),
        "simulations": simulations(admin_url, migrate, log),
    }


def markdown(result: dict, size: int, goals: dict) -> list[str]:
    look = result["lookups"]
    lines = [
        "",
        "## Operators' desk (views and simulation)",
        "",
        f"One subscription's row, {look['lookups']} random subscriptions at {size:,}"
        " (milliseconds, client side):",
        "",
        "| query | median | p95 |",
        "|---|---:|---:|",
    ]
    for name, label in (
        ("rule", "the bare rule (status only, baseline)"),
        ("view", "`subscription_now` (everything support asks)"),
        ("timeline", "`member_timeline`"),
    ):
        lines.append(
            f"| {label} | {look[f'{name}_median_ms']:.2f} | {look[f'{name}_p95_ms']:.2f} |"
        )
    lines += [
        "",
        "Simulated billing, day by day through the real run, worker and webhooks"
        " (the sandbox copy excluded):",
        "",
        "| subscriptions | months | days | seconds | copy | charged | cancelled"
        " | forecast agreed | double charges |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sim in result["simulations"]:
        lines.append(
            f"| {sim['subscriptions']:,} | {sim['months']} | {sim['days']} |"
            f" {sim['seconds']:.0f} | {sim['copy_seconds']:.1f} | {sim['charged']:,} |"
            f" {sim['cancelled']:,} | {sim['forecast_agreed']}/{sim['days']} |"
            f" {sim['double_charges']} |"
        )
    goals[f"16. subscription_now lookup <= 5 ms at {size:,} (median)"] = look["view_median_ms"] <= 5
    six = next((s for s in result["simulations"] if s["months"] == 6), None)
    if six is not None:
        goals[f"16. 6 months of {six['subscriptions']:,} simulated in <= 2 minutes"] = (
            six["seconds"] <= 120
        )
    goals["16. simulations: no double charge, every forecast agreed"] = all(
        s["double_charges"] == 0 and s["forecast_agreed"] == s["days"]
        for s in result["simulations"]
    )
    return lines
