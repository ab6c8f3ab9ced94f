"""A short simulation in a sandbox copy: every day through the real run, no double charge."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import pytest

from ops import simulation
from ops.__main__ import main

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
    "club_changes": [{"day": "2027-01-10", "club_id": 1, "status": "closed"}],
}


@pytest.fixture
def sandbox(database_url, clean_db):
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
