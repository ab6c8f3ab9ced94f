"""The billing-run benchmark on small data: it runs the real run to the end against a
fake SQS client, sends concurrently, and reports its verdict. No timing is asserted."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

from bench import billing_run
from tests.integration.test_bench import small_dataset  # noqa: F401 - the fixture


def test_the_benchmark_plans_and_queues_every_eligible_subscription(small_dataset):  # noqa: F811
    # Given the small data set and its eligible subscriptions
    # When the benchmark runs the billing run with a 5 ms queue
    out = io.StringIO()
    with redirect_stdout(out):
        billing_run.main([small_dataset.url, "--delay-ms", "5", "--senders", "4"])
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    # Then every eligible subscription was planned and, with no ledger, queued
    assert result["status"] == "finished"
    assert result["planned"] == result["queued"] > 0
    assert result["batches"] == -(-result["queued"] // 10)
    assert result["most_concurrent"] == 4
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
