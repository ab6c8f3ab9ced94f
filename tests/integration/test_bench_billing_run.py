"""The billing-run benchmark on small data: it runs the real run to the end against a
fake SQS client, sends concurrently, and reports its verdict. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import billing_run
from tests.integration.test_bench import small_dataset  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_plans_and_queues_every_eligible_subscription(small_dataset):  # noqa: F811
    # Given the small data set and its eligible subscriptions
    # When the benchmark runs the billing run with a 5 ms queue
    # (in a process of its own, as `make bench` runs it: the peak RSS in the verdict is the
    # run's, not that of a pytest process that already ran hundreds of tests)
    command = ["-m", "bench.billing_run", small_dataset.url, "--delay-ms", "5", "--senders", "4"]
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Then every eligible subscription was planned and, with no ledger, queued
    assert result["status"] == "finished"
    assert result["planned"] == result["queued"] > 0
    assert result["batches"] == -(-result["queued"] // 10)
    assert result["most_concurrent"] == 4
    # And the forecast step stores one line per message the run queues
    forecast_run = subprocess.run(
        [sys.executable, "-m", "bench.billing_run", small_dataset.url, "--forecast"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    stored = json.loads(forecast_run.stdout.strip().splitlines()[-1])
    assert stored["lines"] == result["queued"]
    assert any(
        f"{stored['lines']:,} lines" in line
        for line in billing_run.report_lines(
            {"forecast": stored, "runs": [result, result]}, 400, {}
        )
    )
    # And the report states the figure and the verdict
    # (the run shares this test process, whose peak RSS is the whole suite's: the verdict
    # is checked on the run's figures with a memory figure on each side of the goal)
    goals: dict = {}
    lines = billing_run.report_lines({"runs": [result, result]}, 400, goals)
    assert any("The daily billing run" in line for line in lines)
    within = {**result, "peak_rss_mb": billing_run.GOAL_RSS_MB - 1}
    billing_run.report_lines({"runs": [within, within]}, 400, goals)
    assert list(goals.values()) == [True]
    over = {**result, "peak_rss_mb": billing_run.GOAL_RSS_MB + 1}
    billing_run.report_lines({"runs": [over, over]}, 400, goals)
    assert list(goals.values()) == [False]
