"""The forecast is the run's own plan and decisions: on a scripted month they agree."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from domain import forecast, forecast_runs, subscriptions, webhooks
from domain.model import SubscriptionStatus
from domain.webhooks import EventType, PlatformEvent
from handlers import forecast as forecast_handler
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from scripts import billing_run
from tests import builders, platforms
from tests.events import LambdaContext, api_event, invoke
from tests.integration.test_billing_run import aws, deliver, receive, schedule_event  # noqa: F401

NOV1 = datetime(2026, 11, 1, 6)
DEC1 = datetime(2026, 12, 1, 6)
WINDOW = (timedelta(seconds=60), timedelta(days=5))


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def stored_forecast(db, at: datetime) -> dict:
    with db.connect() as conn:
        run = conn.execute(
            text("SELECT comparison FROM billing_forecast_run WHERE run_at = :at"), {"at": at}
        ).one()
        lines = conn.execute(
            text("SELECT subscription_id, action, reason FROM billing_forecast WHERE run_at = :at"),
            {"at": at},
        ).all()
    return {"comparison": run.comparison, "lines": lines}


def test_forecast_and_run_agree_every_day_of_a_scripted_month(db, now, platform):
    # Given five members: declined on the first run, a card reported unavailable, a pause
    # and its automatic return, and a December declined until its window closes
    now(NOV1 - timedelta(days=1))
    club = builders.club(db)
    members = [builders.subscription(db, club) for _ in range(4)]
    a, b, c, d = members
    quarterly = builders.club(db)
    builders.billing_schedule(db, quarterly, "quarterly")
    builders.subscription(db, quarterly)
    days = [NOV1, NOV1 + timedelta(days=1), NOV1 + timedelta(days=2)]
    days += [DEC1 + timedelta(days=n) for n in range(7)]
    seen: dict[str, set] = {}
    for day in days:
        now(day - timedelta(hours=1))
        if day == NOV1 + timedelta(days=2):
            subscriptions.change_status(
                SqlAlchemyUnitOfWork(),
                c,
                SubscriptionStatus.PAUSED,
                day - timedelta(hours=1),
                interval_days=33,
            )
            with db.connect() as conn:
                customer = conn.scalar(
                    text("SELECT customer_store_id FROM subscription WHERE id = :i"), {"i": b}
                )
            webhooks.receive(
                SqlAlchemyUnitOfWork(),
                PlatformEvent(
                    "evt-card-b",
                    EventType.CARD_UNAVAILABLE,
                    customer_id=customer,
                    reason="expired",
                ),
                day - timedelta(hours=1),
            )
        platform.set_mode("normal" if day == NOV1 + timedelta(days=1) else "reject")
        # When the run of the day runs (its forecast is stored first, compared after)
        now(day)
        billing_run.run(io.StringIO())
        stored = stored_forecast(db, day)
        # Then what it forecast is exactly what it did
        assert stored["comparison"]["agreed"] is True, (day, stored["comparison"])
        for line in stored["lines"]:
            seen.setdefault(line.action, set()).add(line.subscription_id)
            if line.reason == "returns from pause":
                seen.setdefault("returns from pause", set()).add(line.subscription_id)
    # And the month went through every kind of decision
    assert seen["charge"] >= set(members)
    assert seen["retry"] >= {a, d}
    assert seen["cancel: card unavailable"] == {b}
    assert seen["cancel: window closing"] >= {a, d}
    assert seen["returns from pause"] == {c}


def test_a_run_that_did_something_else_than_forecast_is_reported(db, now, platform):
    # Given the stored forecast of a run at which one member is due
    club = builders.club(db)
    member = builders.subscription(db, club)
    now(NOV1)
    planned = forecast.compute(SqlAlchemyUnitOfWork(), SqlAlchemyUnitOfWork(), NOV1, *WINDOW)
    forecast_runs.store(SqlAlchemyUnitOfWork(), planned, NOV1)
    # When the member is paused before the run, so the run charges nobody
    subscriptions.change_status(SqlAlchemyUnitOfWork(), member, SubscriptionStatus.PAUSED, NOV1)
    billing_run.run(io.StringIO())
    comparison = forecast_runs.compare(
        SqlAlchemyUnitOfWork(), NOV1, NOV1 + timedelta(days=1), NOV1 + timedelta(hours=1)
    )
    # Then the comparison says so, naming the subscription
    assert comparison["agreed"] is False
    assert comparison["only_forecast"] == [[member, "2026-11", "charge"]]


def call(query: dict | None = None):
    return invoke(
        forecast_handler.lambda_handler, api_event("GET", "/billing/forecast", query=query)
    )


def test_the_endpoint_pages_a_stored_forecast_and_computes_one_otherwise(db, now):
    # Given three members due on 1 December, and the forecast of that run stored ahead
    club = builders.club(db)
    members = sorted(builders.subscription(db, club) for _ in range(3))
    now(DEC1 - timedelta(hours=3))
    status, computed, _ = call({"at": "2026-12-01T06:00:00"})
    forecast_handler.lambda_handler({"source": "aws.events"}, LambdaContext())
    # When the endpoint is asked for that run, two details a page
    status2, first, headers = call({"at": "2026-12-01T06:00:00Z", "limit": "2"})
    _, second, _ = call(
        {"at": "2026-12-01T06:00:00", "limit": "2", "after": headers["X-Next-After"]}
    )
    # Then before storing it was computed, and after it is read from the store, paged
    assert (status, computed["source"]) == (200, "computed")
    assert computed["summary"] == [{"club_id": club, "sku": 1234, "charge": 3}]
    assert (status2, first["source"]) == (200, "stored")
    assert first["summary"] == computed["summary"]
    assert [line["subscription_id"] for line in first["details"] + second["details"]] == members
    assert first["details"][0]["action"] == "charge"
    assert (first["details"][0]["attempt"], first["details"][0]["max_attempts"]) == (1, 5)


@pytest.mark.parametrize(
    "query",
    [{"at": "tomorrow"}, {"at": "0001-01-01T00:00:00"}, {"limit": "0"}, {"club_id": "x"}],
)
def test_bad_forecast_queries_are_refused_with_400(db, now, query):
    # When the endpoint gets a query it cannot use
    status, body, _ = call(query)
    # Then it answers 400 with the error envelope, and stores nothing
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert builders.count(db, "billing_forecast_run") == 0


def test_the_scheduled_run_stores_its_forecast_and_the_next_one_compares_it(
    db, now, platform, request
):
    sqs = request.getfixturevalue("aws")  # the SQS of test_billing_run (moto)
    # Given three members due on 1 November and the scheduled run of that day
    from handlers import billing_run as run_handler

    club = builders.club(db)
    for _ in range(3):
        builders.subscription(db, club)
    now(NOV1)
    run_handler.lambda_handler(schedule_event(), LambdaContext())
    messages = receive(sqs)
    assert deliver(sqs, messages) == {"batchItemFailures": []}
    # When the next day's run starts (its workers are done by then)
    now(NOV1 + timedelta(days=1))
    run_handler.lambda_handler(schedule_event(), LambdaContext())
    # Then the first run's forecast was stored and found to agree with what it did
    stored = stored_forecast(db, NOV1)
    assert [line.action for line in stored["lines"]] == ["charge"] * 3
    assert stored["comparison"]["agreed"] is True
    assert stored["comparison"]["actual"] == 3


def test_a_declined_period_retried_after_the_next_began_is_a_line_of_its_own(db, now, platform):
    # Given a member (calendar months) first charged and declined on 29 November, and
    # December begun on the 1st, inside November's window (it closes on 4 December)
    now(datetime(2026, 11, 20, 6))
    member = builders.subscription(db, builders.club(db))
    platform.set_mode("reject")
    now(datetime(2026, 11, 29, 6))
    billing_run.run(io.StringIO())
    # When the run of 1 December is forecast, stored, and paged one subscription at a time
    planned = forecast.compute(SqlAlchemyUnitOfWork(), SqlAlchemyUnitOfWork(), DEC1, *WINDOW)
    forecast_runs.store(SqlAlchemyUnitOfWork(), planned, DEC1)
    status, body, _ = call({"at": DEC1.isoformat(), "limit": "1"})
    # Then November is retried inside its own window and December charged: two lines of
    # one subscription, both on the one page
    mine = sorted(
        (line.period, line.action, line.attempt)
        for line in planned.lines
        if line.subscription_id == member
    )
    assert mine == [("2026-11", "retry", 2), ("2026-12", "charge", 1)]
    assert status == 200
    assert sorted((d["period"], d["action"]) for d in body["details"]) == [
        ("2026-11", "retry"),
        ("2026-12", "charge"),
    ]
