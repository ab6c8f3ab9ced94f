"""What the run decides over its whole plan, forecast the way it decides it: members'
club changes taking effect (issue 15) and the cancellation breaker (issue 12)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from common import clock, settings
from domain import cancellation_breaker, club_changes, forecast, forecast_runs
from domain.club_change_model import ChangeRequest, When
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from scripts import billing_run, release_cancellations
from tests import builders, platforms
from tests.integration.test_money_ops import FIRST_RUN, cancelled, declined_members

NOV1 = datetime(2026, 11, 1, 6)
DEC1 = datetime(2026, 12, 1, 6)
WINDOW = (timedelta(seconds=60), timedelta(days=5))


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def compute(at: datetime, breaker: cancellation_breaker.Breaker | None = None) -> forecast.Forecast:
    uow = SqlAlchemyUnitOfWork
    return forecast.compute(uow(), uow(), at, *WINDOW, breaker=breaker)


def comparison_of(db, at: datetime) -> dict:
    with db.connect() as conn:
        return conn.scalar(
            text("SELECT comparison FROM billing_forecast_run WHERE run_at = :at"), {"at": at}
        )


def ledger(db, subscription_id: str) -> dict[str, tuple[str, int]]:
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT period, state, store_sku FROM charge WHERE subscription_id = :s"),
            {"s": subscription_id},
        )
        return {row.period: (row.state, row.store_sku) for row in rows}


def test_a_member_changing_club_is_forecast_at_the_boundary_as_the_run_then_bills_it(
    db, now, platform
):
    # Given a member of a monthly club (SKU 1001) and one who stays, both charged for
    # November, and another club (SKU 2002)
    now(NOV1 - timedelta(days=10))
    old_club, new_club = builders.club(db, sku=1001), builders.club(db, sku=2002)
    member, stays = builders.subscription(db, old_club), builders.subscription(db, old_club)
    now(NOV1)
    billing_run.run(io.StringIO())
    # And on 20 November the member asks to move to the other club at the next period
    now(datetime(2026, 11, 20, 12))
    change = club_changes.request_change(
        SqlAlchemyUnitOfWork(), ChangeRequest(member, new_club), clock.now()
    ).change
    target = change.target_subscription_id
    # When the run of 1 December is forecast the evening before (the change not in effect)
    now(DEC1 - timedelta(hours=10))
    planned = compute(DEC1)
    forecast_runs.store(SqlAlchemyUnitOfWork(), planned, clock.now())
    # Then the new club's first period is a charge, named as the change, under its SKU;
    # the subscription left is reported as leaving, its December not charged
    lines = {(line.subscription_id, line.period): line for line in planned.lines}
    joined = lines[(target, "2026-12")]
    assert (joined.action, joined.club_id, joined.sku) == ("charge", new_club, 2002)
    assert joined.reason.startswith(f"club change from club {old_club} (new subscription")
    left = lines[(member, "2026-12")]
    assert (left.action, left.club_id, left.sku) == ("club change: leaves", old_club, 1001)
    assert f"to club {new_club} (subscription {target})" in left.reason
    assert lines[(stays, "2026-12")].action == "charge"
    assert planned.summary == [
        {"club_id": old_club, "sku": 1001, "charge": 1, "club change: leaves": 1},
        {"club_id": new_club, "sku": 2002, "charge": 1, "club change: joins": 1},
    ]
    # When the run of 1 December runs (it keeps that forecast and compares it after)
    now(DEC1)
    counts = billing_run.run(io.StringIO())
    # Then it did exactly what was forecast: the new club charged its first period with
    # its SKU, the subscription left charged nothing more
    assert counts["forecast agreed"] == 1
    comparison = comparison_of(db, DEC1)
    assert comparison["agreed"] is True, comparison
    assert sorted(comparison["only_forecast"] + comparison["only_actual"]) == []
    assert ledger(db, target) == {"2026-12": ("succeeded", 2002)}
    assert ledger(db, member) == {"2026-11": ("succeeded", 1001)}
    # And the next day's forecast no longer reports the change (it took effect)
    later = compute(DEC1 + timedelta(days=1))
    assert not [line for line in later.lines if "club change" in (line.reason or line.action)]


def test_a_change_taking_effect_now_is_reported_by_the_next_run_s_forecast(db, now, platform):
    # Given a member who joined on 18 November, not charged yet, and moves to another
    # club "now" on 20 November (the period moves with the member)
    now(datetime(2026, 11, 18, 12))
    old_club, new_club = builders.club(db, sku=1001), builders.club(db, sku=2002)
    member = builders.subscription(db, old_club)
    now(datetime(2026, 11, 20, 12))
    change = club_changes.request_change(
        SqlAlchemyUnitOfWork(), ChangeRequest(member, new_club, When.NOW), clock.now()
    ).change
    # When the next run (21 November) is forecast
    run_at = datetime(2026, 11, 21, 6)
    planned = compute(run_at)
    # Then the moved period is the new club's charge, and the member leaves the old one
    actions = {(line.subscription_id, line.action, line.sku) for line in planned.lines}
    assert actions == {
        (change.target_subscription_id, "charge", 2002),
        (member, "club change: leaves", 1001),
    }
    # And the run agrees
    now(run_at)
    assert billing_run.run(io.StringIO())["forecast agreed"] == 1


def breaker_of(monkeypatch, fraction: str, floor: str) -> cancellation_breaker.Breaker:
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", fraction)
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", floor)
    settings.get.cache_clear()
    return cancellation_breaker.Breaker.configured(settings.get())


def test_when_the_breaker_will_hold_the_forecast_says_so_and_agrees_with_the_run(
    db, now, platform, monkeypatch
):
    # Given 4 members whose November windows closed, and a breaker allowing 2 of 4 due
    subs = declined_members(db, now, platform, 4)
    breaker = breaker_of(monkeypatch, "0.5", "1")
    day = FIRST_RUN + timedelta(days=6)
    # When the run of that day is forecast ahead
    now(day - timedelta(hours=2))
    planned = compute(day, breaker)
    # Then its cancellations are forecast as held by the breaker, with why
    assert {line.subscription_id: line.action for line in planned.lines} == {
        sub: "cancel held: window closing" for sub in subs
    }
    assert planned.breaker == {"due": 4, "cancellations": 4, "limit": 2, "held": True}
    assert planned.summary[0]["cancel held: window closing"] == 4
    # When the run comes (it holds them: nobody cancelled)
    now(day)
    counts = billing_run.run(io.StringIO())
    # Then what it did is what was forecast: held, not a disagreement
    assert (counts["held"], counts["cancelled"]) == (4, 0)
    assert cancelled(db, subs) == 0
    comparison = comparison_of(db, day)
    assert comparison["agreed"] is True, comparison
    assert comparison["forecast"] == comparison["actual"] == 4
    # And the next day, nobody having released them, the run holds them again and its
    # forecast still agrees
    now(day + timedelta(days=1))
    counts = billing_run.run(io.StringIO())
    assert (counts["held"], counts["forecast agreed"]) == (4, 1)
    # And with a breaker that lets them through, the forecast says they are carried out
    loose = compute(day + timedelta(days=2), cancellation_breaker.Breaker(0.5, 25))
    assert {line.action for line in loose.lines} == {"cancel: window closing"}
    assert loose.breaker["held"] is False


def test_cancellations_released_by_an_operator_are_not_the_run_s_doing(
    db, now, platform, monkeypatch
):
    # Given a run that held 4 cancellations, its forecast stored
    subs = declined_members(db, now, platform, 4)
    breaker_of(monkeypatch, "0.5", "1")
    day = FIRST_RUN + timedelta(days=6)
    now(day)
    billing_run.run(io.StringIO())
    # When an operator releases them in the afternoon (the worker cancels them)
    now(day + timedelta(hours=8))
    assert release_cancellations.main(["--operator", "ana"]) == 0
    assert cancelled(db, subs) == 4
    # Then the run's forecast, compared again over its whole day, still agrees
    comparison = forecast_runs.compare(
        SqlAlchemyUnitOfWork(), day, day + timedelta(days=1), clock.now()
    )
    assert comparison["agreed"] is True, comparison
