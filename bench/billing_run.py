"""The daily billing run at scale: plan every eligible subscription and queue the due ones.

python -m bench.billing_run <database url> [--delay-ms 20] [--senders 16]
    # prints {"seconds": ..., "planned": ..., "queued": ..., "peak_rss_mb": ..., ...}
python -m bench.billing_run <database url> --forecast
    # the forecast of the run, stored ahead as billingForecastStore does at 04:00

Each measurement is a fresh process (its peak RSS is the run's), calling the run exactly
as the Lambda handler does (`handlers.billing_run.run`: one ordered stream, checkpoints, the same
number of sending threads), with the real SQS adapter over a fake client whose
SendMessageBatch takes `--delay-ms` (20 ms: SQS's latency seen from Lambda in-region).
`--delay-ms 0` is the baseline: planning alone, the same code and the same database.
The run's checkpoint row is removed before and after, so every measurement is a full run.

First, in a process of its own, the forecast of the day's run is stored as production
stores it two hours ahead (`handlers.forecast.prepare`, the billingForecastStore schedule):
both runs then find it, as the 06:00 run does, and each compares it with the audit. (A run
that finds none computes it first: the same work, measured here on its own.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.memory import peak_rss_kb


class SlowSqs:
    """SendMessageBatch as a boto3 SQS client answers it, after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        with self.lock:
            self.calls += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}
        finally:
            with self.lock:
                self.active -= 1


def data_connect(url: str):
    from bench import data

    return data.connect(url)


def clear_checkpoint(url: str, run_date) -> None:
    conn = data_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM billing_run WHERE run_date = %s", (run_date,))
        conn.commit()
    finally:
        conn.close()


def store_forecast(url: str, now: datetime) -> dict:
    """The forecast of the run at `now`'s daily run, stored as billingForecastStore does:
    its handler, with the clock at 04:00 of that day (any stored one removed first)."""
    from common import clock
    from domain import forecast
    from handlers import forecast as forecast_handler
    from tests.events import LambdaContext

    run_at = forecast.last_run(now)
    conn = data_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM billing_forecast WHERE run_at = %s", (run_at,))
            cur.execute("DELETE FROM billing_forecast_run WHERE run_at = %s", (run_at,))
        conn.commit()
    finally:
        conn.close()
    clock.set_source(lambda: run_at - timedelta(hours=2))
    try:
        started = time.perf_counter()
        stored = forecast_handler.prepare({}, LambdaContext())
        seconds = time.perf_counter() - started
    finally:
        clock.set_source(None)
    return {"seconds": seconds, "lines": stored["lines"], "peak_rss_mb": peak_rss_kb() / 1024}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=None)
    parser.add_argument("--forecast", action="store_true", help="store the run's forecast")
    args = parser.parse_args(argv)
    os.environ["DATABASE_URL"] = args.url
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the handler's logs, for the process's life
    from adapters.billing_queue import SqsBillingQueue
    from common import settings
    from handlers import billing_run
    from repositories import database

    settings.get.cache_clear()
    database.reset()
    now = datetime.now(UTC).replace(tzinfo=None)
    if args.forecast:
        out.write(json.dumps(store_forecast(args.url, now)) + "\n")
        return
    clear_checkpoint(args.url, now.date())
    client = SlowSqs(args.delay_ms / 1000)
    queue = SqsBillingQueue("https://sqs.bench/billing", client)
    senders = args.senders or billing_run.SENDERS
    started = time.perf_counter()
    result = billing_run.run(queue, now, senders=senders)
    seconds = time.perf_counter() - started
    clear_checkpoint(args.url, now.date())
    planned = sum(result.counts.values())
    out.write(
        json.dumps(
            {
                "status": result.status,
                "seconds": seconds,
                "planned": planned,
                "queued": result.counts["queued"],
                "batches": client.calls,
                "senders": senders,
                "most_concurrent": client.most_active,
                "delay_ms": args.delay_ms,
                "checkpoints": -(-planned // billing_run.CHECKPOINT_EVERY),
                "peak_rss_mb": peak_rss_kb() / 1024,
            }
        )
        + "\n"
    )


def _child(url: str, root: Path, *args: str) -> dict:
    import subprocess

    done = subprocess.run(  # noqa: S603 - our own module, our own database URL
        [sys.executable, "-m", "bench.billing_run", url, *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(url: str, root: Path, delays_ms: tuple[float, ...] = (0.0, 20.0)) -> dict:
    """The forecast stored ahead, then one fresh process per queue latency:
    {"forecast": {...}, "runs": [...]}, the baseline first."""
    found = _child(url, root, "--forecast")
    runs = [_child(url, root, "--delay-ms", str(delay)) for delay in delays_ms]
    return {"forecast": found, "runs": runs}


if __name__ == "__main__":
    main()


GOAL_SECONDS = 300
GOAL_RSS_MB = 256


def report_lines(result: dict, size: int, goals: dict) -> list[str]:
    """The BENCHMARKS.md section, and the goal of issue 13 added to `goals`."""
    baseline, run = result["runs"][0], result["runs"][-1]
    sequential = run["batches"] * run["delay_ms"] / 1000
    goals[f"13. billing run at {size:,}: plans and queues everything in < 5 min, < 256 MB RSS"] = (
        run["status"] == "finished"
        and run["queued"] == baseline["queued"]
        and run["seconds"] < GOAL_SECONDS
        and run["peak_rss_mb"] < GOAL_RSS_MB
    )
    return [
        "",
        "## The daily billing run",
        "",
        f"At {size:,} subscriptions: `handlers.billing_run.run` as the Lambda runs it (one",
        "stream in subscription id order, a checkpoint every 20,000, the real SQS adapter), in a",
        "fresh",
        "process. The queue is a fake SQS client whose SendMessageBatch takes the given time;",
        "0 ms is the baseline (planning alone).",
        "",
        "| SendMessageBatch | planned | queued | batches | senders (most at once)"
        " | checkpoints | time | peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['delay_ms']:g} ms | {r['planned']:,} | {r['queued']:,} | {r['batches']:,} |"
            f" {r['senders']} ({r['most_concurrent']}) | {r['checkpoints']} |"
            f" {r['seconds']:.1f} s | {r['peak_rss_mb']:.0f} MB |"
            for r in result["runs"]
        ),
        "",
        f"One batch after another, the {run['batches']:,} calls alone would take"
        f" {sequential:.0f} s at {run['delay_ms']:g} ms each.",
        *_forecast_lines(result.get("forecast")),
    ]


def _forecast_lines(found: dict | None) -> list[str]:
    if not found:
        return []
    return [
        "",
        f"Before them, the forecast of the day's run was stored as billingForecastStore"
        f" stores it at 04:00 (its handler, in a fresh process): {found['lines']:,} lines"
        f" in {found['seconds']:.1f} s, peak RSS {found['peak_rss_mb']:.0f} MB. Both runs"
        " find it and compare it with what they audited; a run that finds none computes it"
        " first.",
    ]
