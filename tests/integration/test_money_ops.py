"""The money path's operations (issue 12): the cancellation breaker and its release,
reconciliation against the fake platform, and what error paths log."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from common import clock, settings
from domain import billing
from handlers import billing_run as run_handler
from handlers import charge as charge_handler
from handlers import reconcile as reconcile_handler
from repositories import database
from scripts import billing_run, reconcile, release_cancellations
from tests import builders, platforms
from tests.events import LambdaContext, api_event, invoke

FIRST_RUN = datetime(2026, 11, 1, 6)


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def declined_members(db, now, platform, count: int) -> list[str]:
    """`count` members declined on 1 November and every day after: windows closed on 6th."""
    now(FIRST_RUN - timedelta(days=10))
    club = builders.club(db)
    subs = [builders.subscription(db, club) for _ in range(count)]
    platform.set_mode("reject")
    for day in range(5):
        now(FIRST_RUN + timedelta(days=day))
        billing_run.run(io.StringIO())
    platform.set_mode("normal")
    return subs


def cancelled(db, subs: list[str]) -> int:
    return sum(builders.history(db, sub)[-1][0] == 2 for sub in subs)


def test_the_breaker_holds_cancellations_above_its_limit_until_an_operator_releases_them(
    db, now, platform, monkeypatch, capsys
):
    # Given 4 members whose November windows closed, and a breaker allowing 3 of 4 due
    subs = declined_members(db, now, platform, 4)
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0.5")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    settings.get.cache_clear()
    now(FIRST_RUN + timedelta(days=6))
    # When the run comes with 4 cancellations due (limit max(1, 0.5 * 4) = 2)
    counts = billing_run.run(io.StringIO())
    # Then none is carried out: all four are held, audited, and nobody is cancelled
    assert counts["held"] == 4
    assert cancelled(db, subs) == 0
    assert builders.count(db, "billing_hold", "released_at IS NULL") == 4
    assert builders.count(db, "billing_audit", "action = 'cancellation_held'") == 4
    # When an operator lists, then releases them with the one command
    assert release_cancellations.main(["--list"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert release_cancellations.main(["--operator", "ana"]) == 0
    # Then they are carried out (re-checked against the ledger), audited with the operator
    assert cancelled(db, subs) == 4
    assert builders.count(db, "billing_audit", "actor = 'operator:ana'") == 4


def test_below_its_limit_the_breaker_lets_cancellations_through(db, now, platform):
    # Given 2 members whose windows closed, and the default breaker (floor 25)
    subs = declined_members(db, now, platform, 2)
    now(FIRST_RUN + timedelta(days=6))
    # When the run comes, Then both are cancelled, nothing is held
    counts = billing_run.run(io.StringIO())
    assert (counts["cancelled"], counts["held"]) == (2, 0)
    assert cancelled(db, subs) == 2


def test_the_scheduled_producer_holds_and_emits_the_alarm_metric(
    db, now, platform, monkeypatch, capsys
):
    # Given 3 cancellations due and a breaker allowing 1
    declined_members(db, now, platform, 3)
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    settings.get.cache_clear()
    now(FIRST_RUN + timedelta(days=6))
    sent = []

    class Queue:
        def send(self, messages):
            sent.extend(messages)

    # When the scheduled (resumable) run runs (metrics of earlier tests' runs cleared)
    run_handler.metrics.clear_metrics()
    result = run_handler.run(Queue(), clock.now())
    # Then no cancellation is queued, and the held count is the alarm's metric
    assert result.status == "finished"
    assert [m for m in sent if m.step == billing.Step.CANCEL] == []
    assert result.counts["held"] == 3
    assert builders.count(db, "billing_hold", "released_at IS NULL") == 3
    run_handler.metrics.flush_metrics()
    assert '"CancellationsHeld":[3.0]' in capsys.readouterr().out.replace(" ", "")


class Deadline:
    """Time left that runs out after `calls` looks (the run stops at its margin)."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self) -> float:
        self.calls -= 1
        return float("inf") if self.calls > 0 else 0.0


def test_a_resumed_run_keeps_its_day_s_breaker_decision_and_queues_no_held_cancellation(
    db, now, platform, monkeypatch
):
    # Given 4 cancellations due, 2 members with a charge due, and a breaker allowing 1
    subs = declined_members(db, now, platform, 4)
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    settings.get.cache_clear()
    day = FIRST_RUN + timedelta(days=6)
    now(day - timedelta(days=1))
    due = [builders.subscription(db, builders.club(db)) for _ in range(2)]
    now(day)
    sent = []

    class Queue:
        def send(self, messages):
            sent.extend(messages)

    # When the scheduled run is cut off after its first subscriptions, then resumed
    first = run_handler.run(Queue(), day, Deadline(2), check_every=1, checkpoint_every=1)
    assert first.status == "paused"
    second = run_handler.run(Queue(), day + timedelta(minutes=15), check_every=1)
    # Then the decision made before anything was queued holds for the whole day: no
    # cancellation is queued by either invocation, every charge due is, each once
    assert second.status == "finished"
    assert [m for m in sent if m.step == billing.Step.CANCEL] == []
    charged = [m.subscription_id for m in sent if m.step == billing.Step.CHARGE]
    assert sorted(charged) == sorted(due)
    assert builders.count(db, "billing_hold", "released_at IS NULL") == 4
    assert cancelled(db, subs) == 0


def test_a_resumed_run_of_a_day_holding_earlier_holds_again_queues_no_cancellation(
    db, now, platform, monkeypatch
):
    # Given 4 cancellations held by yesterday's run and never released, 2 charges due
    subs = declined_members(db, now, platform, 4)
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    settings.get.cache_clear()
    day = FIRST_RUN + timedelta(days=6)
    now(day)
    billing_run.run(io.StringIO())
    due = [builders.subscription(db, builders.club(db)) for _ in range(2)]
    sent = []

    class Queue:
        def send(self, messages):
            sent.extend(messages)

    # When the next day's scheduled run is cut off after its first subscriptions, then
    # resumed (the breaker decided by the first invocation: held again)
    nextday = day + timedelta(days=1)
    now(nextday)
    first = run_handler.run(Queue(), nextday, Deadline(2), check_every=1, checkpoint_every=1)
    assert first.status == "paused"
    second = run_handler.run(Queue(), nextday + timedelta(minutes=15), check_every=1)
    # Then neither invocation queued a cancellation; every charge due was queued
    assert second.status == "finished"
    assert [m for m in sent if m.step == billing.Step.CANCEL] == []
    assert sorted(m.subscription_id for m in sent if m.step == billing.Step.CHARGE) == sorted(due)
    assert cancelled(db, subs) == 0


def test_below_the_limit_the_resumable_run_queues_the_cancellations(db, now, platform):
    # Given 2 cancellations due and the default breaker (floor 25)
    declined_members(db, now, platform, 2)
    day = FIRST_RUN + timedelta(days=6)
    now(day)
    sent = []

    class Queue:
        def send(self, messages):
            sent.extend(messages)

    # When the scheduled run runs
    result = run_handler.run(Queue(), day)
    # Then both cancellations are queued, nothing held
    assert result.counts["held"] == 0
    assert len([m for m in sent if m.step == billing.Step.CANCEL]) == 2
    assert builders.count(db, "billing_hold") == 0


def card_reported_members(db, now, count: int) -> list[str]:
    """`count` members whose cards the platform reported unavailable before the run."""
    from domain import webhooks
    from domain.webhooks import EventType, PlatformEvent
    from repositories.unit_of_work import SqlAlchemyUnitOfWork

    club = builders.club(db)
    subs = []
    for n in range(count):
        customer = f"carded-{n}-{builders.unique_customer()}"
        subs.append(builders.subscription(db, club, customer=customer))
        webhooks.receive(
            SqlAlchemyUnitOfWork(),
            PlatformEvent(
                f"evt-card-{customer}",
                EventType.CARD_UNAVAILABLE,
                customer_id=customer,
                reason="expired",
            ),
            FIRST_RUN - timedelta(hours=1),
        )
    return subs


class Recorded:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, messages) -> None:
        self.sent.extend(messages)


def test_the_resumable_run_s_breaker_weighs_card_report_cancellations(
    db, now, platform, monkeypatch
):
    # Given 3 members whose cards were reported unavailable, and a breaker allowing 1
    now(FIRST_RUN - timedelta(days=1))
    card_reported_members(db, now, 3)
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    settings.get.cache_clear()
    queue = Recorded()
    # When the scheduled run runs
    result = run_handler.run(queue, FIRST_RUN)
    # Then the three cancellations are held, none queued
    assert result.counts["held"] == 3
    assert [m for m in queue.sent if m.step == billing.Step.CANCEL] == []
    assert builders.count(db, "billing_hold", "released_at IS NULL") == 3


def test_the_resumable_run_s_breaker_limit_counts_every_member_due(db, now, platform, monkeypatch):
    # Given 3 cancellations due (card reports) among 6 members due, and a breaker allowing
    # half the due set (3: the cancellations are within it)
    now(FIRST_RUN - timedelta(days=1))
    card_reported_members(db, now, 3)
    club = builders.club(db)
    charged = [builders.subscription(db, club) for _ in range(3)]
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS", "0.5")
    monkeypatch.setenv("BILLING_MAX_CANCELLATIONS_FLOOR", "1")
    settings.get.cache_clear()
    queue = Recorded()
    # When the scheduled run runs
    result = run_handler.run(queue, FIRST_RUN)
    # Then nothing is held: the three cancellations and the three charges are queued
    assert result.counts["held"] == 0
    assert len([m for m in queue.sent if m.step == billing.Step.CANCEL]) == 3
    assert sorted(m.subscription_id for m in queue.sent if m.step == billing.Step.CHARGE) == (
        sorted(charged)
    )
    assert builders.count(db, "billing_hold") == 0


def post(sub: str, request_id: str):
    event = api_event(
        "POST", "/subscription/{id}/charge/{request_id}", {"id": sub, "request_id": request_id}
    )
    return invoke(charge_handler.lambda_handler, event)


def test_reconciliation_settles_unknown_rows_and_reports_what_does_not_match(
    db, now, platform, monkeypatch, capsys
):
    # Given a charge whose answer was lost (the platform made the order), one never
    # answered for which the platform holds nothing, and an order we never sent
    now(datetime(2026, 11, 10, 9))
    club = builders.club(db, sku=9)
    lost, empty = builders.subscription(db, club), builders.subscription(db, club)
    platform.set_mode("drop", times=1)
    assert post(lost, "lost-1")[0] == 502
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at)"
                " VALUES (:s, '2026-11', 'never-1', 'unknown', 1, :n, :n, :n)"
            ),
            {"s": empty, "n": clock.now()},
        )
    platform.create_order("stranger-1", "someone", 9)
    # When reconciliation runs (the script: a table, then JSON)
    now(datetime(2026, 11, 10, 10))
    assert reconcile.main([]) == 1
    out = capsys.readouterr().out
    # Then the lost charge is settled paid, the empty one as a platform error
    states = {
        sub: builders.count(db, "charge", "subscription_id = :s AND state = :st", s=sub, st=st)
        for sub, st in ((lost, "succeeded"), (empty, "error"))
    }
    assert states == {lost: 1, empty: 1}
    # And the order we never sent is reported, as a table and as JSON
    assert "| orders_without_ledger | order_without_ledger |" in out
    report = json.loads(out[out.index('{\n  "double_charges"') :])
    assert [f["request_id"] for f in report["orders_without_ledger"]] == ["stranger-1"]
    assert {f["kind"] for f in report["settled"]} == {"paid", "no_order"}


def test_a_double_charge_is_listed_until_an_operator_marks_it_refunded(db, now, platform, capsys):
    # Given a period paid by two orders at the platform (found by reconciliation)
    now(datetime(2026, 11, 10, 9))
    sub = builders.subscription(db, builders.club(db, sku=9))
    assert post(sub, "one")[0] == 201
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at)"
                " SELECT id, 0, 'two', :n FROM charge"
            ),
            {"n": clock.now()},
        )
    platform.create_order("two", "x", 9)
    capsys.readouterr()
    report = reconcile_handler.lambda_handler({}, LambdaContext())
    # Then it is listed as a double charge, counted in the DoubleChargeAlarm's metric
    assert [f["request_id"] for f in report["double_charges"]] == ["two"]
    assert '"DoubleCharge":[1.0]' in capsys.readouterr().out.replace(" ", "")
    anomaly_id = builders.count(db, "charge_anomaly")
    # When an operator marks it refunded
    assert (
        reconcile.main(
            ["--resolve", str(anomaly_id), "--note", "refunded two", "--operator", "ana"]
        )
        == 0
    )
    # Then it is no longer listed, and the resolution is audited
    assert reconcile_handler.lambda_handler({}, LambdaContext())["double_charges"] == []
    assert builders.count(db, "billing_audit", "action = 'anomaly_resolved'") == 1


def test_the_engine_hides_statement_parameters(database_url):
    # Given the application's engine, Then errors never carry the values sent
    assert database.engine().hide_parameters is True


def test_an_error_path_logs_no_customer_id(db, now, platform, logs, monkeypatch):
    # Given a member whose charge fails at the database after the platform answered
    now(datetime(2026, 11, 10, 9))
    customer = builders.unique_customer()
    sub = builders.subscription(db, builders.club(db, sku=9), customer=customer)
    from repositories import charges as charge_repository

    monkeypatch.setattr(
        charge_repository,
        "_RECORD",
        # The platform's answer (the order, naming the customer) is a parameter of it.
        text("SELECT 1 / 0 AS x, CAST(:body AS text) AS answer"),
    )
    # When charged (the database refuses the write that carries the customer id)
    status, _, _ = post(sub, "r1")
    # Then 500 with nothing of the customer in the log lines
    assert status == 500
    assert logs()
    assert customer not in logs.text()


def test_without_an_order_lookup_unknown_rows_are_reported_for_review_not_guessed(
    db, now, platform, monkeypatch
):
    # Given a charge whose outcome is unknown, and a platform without GET /order
    now(datetime(2026, 11, 10, 9))
    sub = builders.subscription(db, builders.club(db, sku=9))
    platform.set_mode("drop", times=1)
    assert post(sub, "lost-1")[0] == 502
    monkeypatch.setenv("ECOMM_ORDER_LOOKUP", "false")
    settings.get.cache_clear()
    now(datetime(2026, 11, 10, 10))
    # When reconciliation runs
    report = reconcile_handler.lambda_handler({}, LambdaContext())
    # Then the row is listed for review and left unknown
    assert [f["request_id"] for f in report["for_review"]] == ["lost-1"]
    assert builders.count(db, "charge", "state = 'unknown'") == 1


def test_a_platform_failure_is_counted_in_the_platform_failure_alarm_s_metric(
    db, now, platform, capsys
):
    # Given a platform answering 5xx
    now(datetime(2026, 11, 10, 9))
    sub = builders.subscription(db, builders.club(db, sku=9))
    platform.set_mode("fail")
    capsys.readouterr()
    # When the subscription is charged
    status = post(sub, "failing")[0]
    # Then the failure is counted under the PlatformFailureAlarm's metric name
    assert status >= 500
    assert '"PlatformFailure":[1.0]' in capsys.readouterr().out.replace(" ", "")


def test_reconciliation_matches_flash_promo_orders_against_their_own_ledger(
    db, now, platform, capsys
):
    # Given two promo orders the platform holds paid: one recorded sold here, one whose
    # answer was lost (unknown)
    now(datetime(2026, 11, 10, 9))
    with db.begin() as conn:
        for request_id, state in (("promo-sold-1", "succeeded"), ("promo-lost-1", "unknown")):
            conn.execute(
                text(
                    "INSERT INTO promo_order (reservation_id, promo_id, customer_id, sku,"
                    " request_id, state, attempts, created_at, updated_at, last_attempt_at)"
                    " VALUES (:r, 1, 'promo-customer', 77, :r, :st, 1, :n, :n, :n)"
                ),
                {"r": request_id, "st": state, "n": clock.now()},
            )
            platform.create_order(request_id, "promo-customer", 77)
    # When reconciliation runs
    now(datetime(2026, 11, 10, 10))
    reconcile.main(["--json"])
    report = json.loads(capsys.readouterr().out)
    # Then neither is an order without a ledger row; the lost one is for review
    assert report["orders_without_ledger"] == []
    assert [(f["kind"], f["request_id"]) for f in report["for_review"]] == [
        ("promo_order_unsettled", "promo-lost-1")
    ]


def test_releasing_with_nothing_held_needs_no_platform(db, monkeypatch, capsys):
    # Given nothing held, and no platform to reach (its client would fail to build)
    def no_platform():
        raise AssertionError("the platform client was built with nothing to release")

    monkeypatch.setattr(release_cancellations, "platform", no_platform)
    # When an operator releases
    assert release_cancellations.main(["--operator", "ana"]) == 0
    # Then nothing was released and no client was built
    assert capsys.readouterr().out.strip() == "released 0:"
    assert builders.count(db, "billing_audit", "actor = 'operator:ana'") == 0
