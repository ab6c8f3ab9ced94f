"""A short simulation in a sandbox copy: every day through the real run, no double charge."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from ops import simulation
from ops.__main__ import main
from repositories import database

SCENARIO = {
    "seed": 3,
    "clubs": 2,
    "subscriptions": 24,
    "decline_rate": 0.3,
    "payment_failure_rate": 0.1,
    "outage_days": ["2026-12-02"],
    "late_webhook_rate": 0.3,
    "late_webhook_days": 2,
    "duplicate_webhook_rate": 0.3,
    "card_reports": [{"day": "2026-12-15", "count": 2, "reason": "expired"}],
    "pauses": [{"day": "2026-12-20", "count": 3, "days": 15}],
    "club_statuses": [{"day": "2027-01-10", "club_id": 1, "status": "closed"}],
}


@pytest.fixture
def sandbox(database_url, clean_db):
    # The test's own pooled connections closed first: with no session on the source, the
    # copy is a CREATE DATABASE ... TEMPLATE (its dump-and-restore fallback took 5 s).
    clean_db.dispose()
    database.reset()
    url = simulation.copy(database_url)
    yield url
    simulation.drop(url)


def test_two_months_run_every_day_agree_with_the_forecast_and_never_charge_twice(sandbox):
    # Given a sandbox copy of a database and a rough scenario
    scenario = simulation.Scenario.from_dict(SCENARIO)
    seen: list[date] = []
    progress = io.StringIO()
    # When two months are simulated from 1 December
    report = simulation.simulate(
        sandbox,
        date(2026, 12, 1),
        2,
        scenario,
        timedelta(seconds=60),
        timedelta(days=5),
        out=progress,
        on_day=seen.append,
    )
    # Then every day was run, in order, without a jump
    assert seen == [date(2026, 12, 1) + timedelta(days=n) for n in range(62)]
    assert "day 62/62" in progress.getvalue()
    dec, jan = report.months["2026-12"], report.months["2027-01"]
    # And each run did what its forecast said
    assert (dec.forecast_agreed, jan.forecast_agreed) == (31, 31)
    # And the scenario happened: charges, refusals retried, the outage, cancellations
    assert dec.charged >= 20
    assert jan.charged >= 15
    assert dec.refused > 0
    assert dec.retried > 0
    assert dec.platform_errors > 0
    assert dec.duplicate_webhooks > 0
    assert dec.cancelled + jan.cancelled >= 2
    assert set(dec.units_per_sku) == {"9000", "9001"}
    assert 0 < sum(dec.units_per_sku.values()) <= dec.charged
    # And nobody was charged twice for a period
    assert report.double_charges == 0


# Members moving club on 10 December (at the next period: 1 January) and card reports
# that make the 1 January run want more cancellations than the breaker lets through; an
# operator releases them on 3 January.
SHORT = {
    "seed": 11,
    "clubs": 2,
    "subscriptions": 12,
    "card_reports": [{"day": "2026-12-12", "count": 6, "reason": "expired"}],
    "club_changes": [{"day": "2026-12-10", "count": 3, "from_club": 1, "to_club": 2}],
    "releases": ["2027-01-03"],
}


def test_a_short_scenario_moves_members_and_holds_cancellations_as_the_run_does(
    sandbox, monkeypatch
):
    # Given a sandbox and a breaker letting one cancellation through per run
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    scenario = simulation.Scenario.from_dict(SHORT)
    inspected = {}

    def look(day: date) -> None:
        if day == date(2027, 1, 2):
            inspected["held"] = count(sandbox, "billing_hold", "released_at IS NULL")
            inspected["cancelled"] = count(sandbox, "billing_audit", "action = 'cancellation'")

    # When December 8 to January 7 is simulated
    report = simulation.simulate(
        sandbox,
        date(2026, 12, 8),
        1,
        scenario,
        timedelta(seconds=60),
        timedelta(days=5),
        on_day=look,
    )
    dec, jan = report.months["2026-12"], report.months["2027-01"]
    # Then every run did what its forecast said, held cancellations and club changes
    # included
    assert (dec.forecast_agreed, jan.forecast_agreed) == (24, 7)
    # And the three members moved on 1 January: the new club charged January with its
    # SKU, the old subscriptions nothing after December
    assert jan.club_changes == 3
    moves = rows(
        sandbox,
        "SELECT cc.subscription_id, cc.target_subscription_id, cc.effective_at,"
        " (SELECT store_sku FROM charge WHERE subscription_id = cc.target_subscription_id"
        "  AND period = '2027-01' AND state = 'succeeded') AS target_sku,"
        " (SELECT count(*) FROM charge WHERE subscription_id = cc.subscription_id"
        "  AND period = '2027-01') AS old_january"
        " FROM club_change cc",
    )
    assert len(moves) == 3
    assert {(m.effective_at, m.target_sku, m.old_january) for m in moves} == {
        (datetime(2027, 1, 1), 9001, 0)
    }
    # And the 1 January run held its card cancellations (more than the breaker allows):
    # nobody was cancelled until the operator released them on 3 January
    held = len(jan.held)
    assert held >= 2
    assert inspected == {"held": held, "cancelled": 0}
    assert jan.cancelled == held
    assert report.double_charges == 0


def count(url: str, table: str, where: str) -> int:
    return rows(url, f"SELECT count(*) AS n FROM {table} WHERE {where}")[0].n


def rows(url: str, sql: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        engine.dispose()


def test_simulating_in_a_database_not_created_as_a_sandbox_is_refused(database_url, tmp_path):
    # Given the test database itself, which no one marked as a sandbox
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"subscriptions": 1}))
    err = io.StringIO()
    # When the operator points the simulation at it
    code = main(
        ["simulate", "--from", "2026-12-01", "--months", "1", "--sandbox", database_url],
        io.StringIO(),
        err,
    )
    # Then it refuses, and wrote nothing
    assert code == 2
    with pytest.raises(simulation.NotASandbox):
        simulation.require_sandbox(database_url)
