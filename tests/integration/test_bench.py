"""The benchmark's own code on small data: the generator's shape, the comparison with the
rule, and the report's verdicts. No timing is asserted here."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import create_engine, text

from bench import data, eligible, report
from common import settings
from repositories import database
from scripts import devdb
from tests.conftest import migrate


@pytest.fixture
def small_dataset(admin_url, database_url, monkeypatch):
    name = f"beerclub_benchtest_{uuid.uuid4().hex[:8]}"
    url = devdb.ensure_database(admin_url, name)
    migrate(url)
    conn = data.connect(url)
    try:
        history, future = data.generate(conn, 400, datetime(2026, 11, 22))
        conn.commit()
    finally:
        conn.close()
    monkeypatch.setenv("DATABASE_URL", database_url)
    yield data.DataSet(400, url, 400, history, future, None, None)
    monkeypatch.undo()
    settings.get.cache_clear()
    database.reset()
    devdb.drop_database(admin_url, name)


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {
            table: conn.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("club", "subscription", "subscription_status_history")
        }
        found["per_subscription"] = conn.scalar(
            text(
                "SELECT max(n) FROM (SELECT count(*) n FROM subscription_status_history"
                " WHERE effect_date <= '2026-11-22' GROUP BY subscription_id) c"
            )
        )
        found["marked"] = conn.scalar(
            text("SELECT count(DISTINCT subscription_id) FROM subscription_status_dirty")
        )
    with engine.begin() as conn:
        conn.execute(text("SELECT subscription_current_status_absorb()"))
        found["cached"] = conn.scalar(text("SELECT count(*) FROM subscription_current_status"))
    engine.dispose()
    return found


def test_the_generator_writes_the_promised_shape_with_copy_through_the_triggers(small_dataset):
    # Given a data set of 400 subscriptions generated with COPY (triggers on)
    found = counts(small_dataset.url)
    # Then it has 1,000 clubs, 400 subscriptions, 1-6 past rows each plus some future ones
    assert found["club"] == data.CLUBS
    assert found["subscription"] == 400
    assert found["subscription_status_history"] == small_dataset.history_rows
    assert 400 <= small_dataset.history_rows - small_dataset.future_rows <= 2400
    assert found["per_subscription"] <= 6
    assert 0 < small_dataset.future_rows < 100
    # And the COPY fired the cache triggers: every subscription was marked, and has its row
    # once the marks are absorbed
    assert found["marked"] == 400
    assert found["cached"] == 400


def test_the_eligible_measurement_agrees_with_the_rule_and_the_orm_baseline(small_dataset):
    # When the eligible measurement runs once on the small data set (ORM baseline included)
    result = eligible.measure(small_dataset, repeat=1, orm_up_to=1_000)
    # Then the handler's answer was checked against the rule and the ORM computation
    assert result["correct"] is True
    assert 0 < result["eligible"] < 400
    assert result["distinct_on_rows"] == 400
    assert result["orm_python_s"] is not None
    assert result["whole_status"] == 200


def run_with(pages_s: float, distinct_s: float, charge_ratio: float) -> dict:
    size = {"size": 1_000_000, "history_rows": 3_500_000, "eligible": 408_000}
    return {
        "machine": report.machine(),
        "postgres": "16",
        "repeat": 5,
        "datasets": [
            {"built_seconds": 90.0, "rebuild_seconds": 25.0, "future_rows": 100_000},
        ],
        "eligible": [
            size
            | {
                "pages_s": pages_s,
                "pages": 41,
                "large_pages_s": pages_s / 2,
                "large_pages": 5,
                "first_page_s": 0.02,
                "whole_s": 0.4,
                "whole_status": 413,
                "distinct_on_s": distinct_s,
                "distinct_on_rows": 1_000_000,
                "rule_join_s": 2.5,
                "correct": True,
                "orm_python_s": None,
            }
        ],
        "memory": {"peak_rss_mb": 120.0, "ids": 408_000, "whole": 413},
        "writes": {"rows": 200, "with_ms": 1.0, "without_ms": 0.2},
        "coldstart": {"baseline_s": 0.5, "handlers": {"eligible": 0.6}},
        "charges": {"charges": 1000, "handler_s": 2.0 * charge_ratio, "bare_s": 2.0},
        "finished": "2026-11-22 00:00",
        "total_seconds": 400.0,
    }


def test_the_report_states_each_goal_from_the_numbers():
    # Given one run meeting every goal and one whose pages are too slow and charges too heavy
    good, goals = report.markdown(run_with(pages_s=0.5, distinct_s=2.0, charge_ratio=1.5))
    bad_text, bad = report.markdown(run_with(pages_s=0.9, distinct_s=2.0, charge_ratio=2.5))
    # Then the first passes everything and the second fails exactly those two goals
    assert all(goals.values())
    assert "FAIL" not in good
    failed = {goal for goal, passed in bad.items() if not passed}
    assert failed == {
        "1. eligible: all pages of 10,000 <= 1/3 of DISTINCT ON at 1M",
        "4. charge overhead <= 2 x bare loop",
    }
    assert "| 0.45 |" in bad_text


def test_a_reused_data_set_leaves_the_generation_goal_untimed_not_passed():
    # Given a run whose million-row data set was reused from an earlier run
    run = run_with(pages_s=0.5, distinct_s=2.0, charge_ratio=1.5)
    run["datasets"][-1]["built_seconds"] = None
    text, goals = report.markdown(run)
    # Then that goal says it was not timed, neither PASS nor FAIL, and fails nothing
    goal = "6. 1M data set generated in under 2 minutes"
    assert goals[goal] is None
    assert f"| {goal} | not timed (data reused; BENCH_ARGS=--fresh) |" in text
    assert report.verdict(goals[goal]) != "PASS"
