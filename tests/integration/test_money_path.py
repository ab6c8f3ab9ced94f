"""The money path (issue 12): the reproduced double charges and wrongful cancellations,
each on the real database, the real handlers and the fake platform."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta

import pytest
import responses
from sqlalchemy import text

from common import settings
from domain import billing
from handlers import charge as charge_handler
from handlers import webhooks as webhook_handler
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from scripts import billing_run
from tests import builders, platforms
from tests.events import api_event, invoke
from tests.integration.test_charge import ledger, wait_for
from tests.webhook_events import WEBHOOK_SECRET, new_event, signed_event

NOW = datetime(2026, 11, 10, 9)


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch):
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings.get.cache_clear()
    yield
    settings.get.cache_clear()


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


@pytest.fixture
def member(db, now):
    now(NOW - timedelta(days=20))
    customer = builders.unique_customer()
    sub = builders.subscription(db, builders.club(db, sku=42), customer=customer)
    now(NOW)
    return {"id": sub, "customer": customer}


def post(sub: str, request_id: str):
    event = api_event(
        "POST", "/subscription/{id}/charge/{request_id}", {"id": sub, "request_id": request_id}
    )
    return invoke(charge_handler.lambda_handler, event)


def outcome(request_id: str, result: str, at: datetime | None = None, reason: str = "declined"):
    data = {"request_id": request_id, "outcome": result}
    if result == "failure":
        data["reason"] = reason
    event = new_event("payment-outcome", **data)
    if at is not None:
        event["occurred_at"] = at.isoformat()
    return event


def send(payload: dict, sent_at: datetime = NOW):
    return invoke(webhook_handler.lambda_handler, signed_event(payload, sent_at))


def run_on(now, day: datetime):
    now(day)
    return billing_run.run(io.StringIO())


def status_of(db, sub: str) -> int:
    return builders.history(db, sub)[-1][0]


# --- point 2: events -------------------------------------------------------------------


def test_a_late_failure_of_an_older_attempt_never_drops_the_newer_attempts_answer(
    db, member, platform
):
    # Given a first attempt the platform declined
    platform.set_mode("reject", times=1)
    assert post(member["id"], "old")[0] == 422
    # And a newer attempt in flight at a slow platform
    platform.set_mode("slow", delay=0.4, times=1)
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(r=post(member["id"], "new")))
    thread.start()
    wait_for(lambda: ledger(db, member["id"])["request_id"] == "new")
    # When a late failure of the older attempt arrives meanwhile
    assert send(outcome("old", "failure"))[1]["result"] == "applied"
    thread.join()
    # Then the newer attempt's 201 is kept, and the next call replays it: one order
    assert answer["r"][0] == 201
    assert ledger(db, member["id"])["state"] == "succeeded"
    status, body, _ = post(member["id"], "third")
    assert (status, body["replayed"]) == (200, True)
    assert len(platform.orders) == 1


def test_a_failure_dated_before_the_success_of_the_same_order_never_reopens_the_period(
    db, member, platform
):
    # Given a charge paid, its success reported at 10:00
    assert post(member["id"], "paid")[0] == 201
    send(outcome("paid", "success", NOW + timedelta(hours=1)))
    # When a failure of the same order dated 09:30 arrives afterwards
    send(outcome("paid", "failure", NOW + timedelta(minutes=30)))
    # Then the period stays paid, nothing is recorded as a reversal, no second order
    assert ledger(db, member["id"])["state"] == "succeeded"
    assert builders.count(db, "charge_anomaly") == 0
    assert post(member["id"], "again")[0] == 200
    assert len(platform.orders) == 1


def test_a_failure_after_the_success_of_the_same_order_is_a_reversal_for_review(
    db, member, platform, logs
):
    # Given a paid charge
    assert post(member["id"], "paid")[0] == 201
    # When a failure of that order, dated later, arrives
    send(outcome("paid", "failure", NOW + timedelta(hours=2), "chargeback"))
    # Then the period stays paid, a reversal is recorded, audited and counted
    assert ledger(db, member["id"])["state"] == "succeeded"
    assert builders.count(db, "charge_anomaly", "kind = 'reversal'") == 1
    assert any(a["action"] == "reversal" for a in builders.audit(db, member["id"]))
    assert '"kind":"reversal"' in logs.text()
    # And the next call does not charge again
    assert post(member["id"], "again")[0] == 200
    assert len(platform.orders) == 1


def test_a_second_paid_order_of_a_period_is_a_double_charge_never_hidden(
    db, member, platform, logs
):
    # Given a period paid by order A
    assert post(member["id"], "a")[0] == 201
    # When the platform reports order B of the same period paid too (an older attempt
    # whose order went through after all)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at)"
                " SELECT id, 0, 'b', :n FROM charge WHERE subscription_id = :s"
            ),
            {"n": NOW, "s": member["id"]},
        )
    send(outcome("b", "success", NOW))
    # Then the ledger stays paid by A, and the double charge is recorded and alarmed on
    row = ledger(db, member["id"])
    assert (row["state"], row["paid_request_id"]) == ("succeeded", "a")
    assert builders.count(db, "charge_anomaly", "kind = 'double_charge'") == 1
    assert '"kind":"double_charge"' in logs.text()


def test_the_outcome_webhook_before_the_http_answer_leaves_the_order_in_the_ledger(
    db, member, platform, monkeypatch
):
    # Given a platform whose success webhook arrives before its HTTP answer
    real = charge_handler.platform()
    place_order = real.place_order

    def webhook_first(request_id, customer_id, sku_id):
        send(outcome(request_id, "success"))
        return place_order(request_id, customer_id, sku_id)

    monkeypatch.setattr(real, "place_order", webhook_first)
    # When charged
    status, body, _ = post(member["id"], "r1")
    assert status == 201
    # Then a replay answers the order, not null
    status, replay, _ = post(member["id"], "r2")
    assert status == 200
    assert replay["platform_response"]["order_id"] == body["order_id"]


# --- point 3: request ids --------------------------------------------------------------


def test_a_request_id_another_subscription_sent_answers_409_and_calls_nothing(
    db, member, platform, now
):
    # Given a request id already sent for another subscription
    other = builders.subscription(db, builders.club(db, sku=43))
    assert post(other, "shared")[0] == 201
    calls = platform.calls
    # When this subscription is charged with it
    status, body, _ = post(member["id"], "shared")
    # Then 409 request_id_in_use, no call, no ledger row
    assert (status, body["error"]["code"]) == (409, "request_id_in_use")
    assert platform.calls == calls
    assert builders.count(db, "charge", "subscription_id = :s", s=member["id"]) == 0


def test_a_request_id_of_another_period_answers_409(db, member, platform, now):
    # Given November charged under "nov"
    assert post(member["id"], "nov")[0] == 201
    # When December is charged with the same id
    now(datetime(2026, 12, 2, 9))
    status, body, _ = post(member["id"], "nov")
    # Then 409, and December is not recorded as charged
    assert (status, body["error"]["code"]) == (409, "request_id_in_use")
    assert len(platform.orders) == 1


# --- point 4: declines versus platform failures ----------------------------------------


def test_a_platform_refusing_our_key_is_a_502_with_its_answer_not_a_decline(
    db, member, monkeypatch
):
    # Given a platform that does not accept our secret
    with platforms.running(monkeypatch) as running:
        monkeypatch.setenv("ECOMM_API_SECRET", "rotated")
        settings.get.cache_clear()
        charge_handler.platform.cache_clear()
        # When charged
        status, body, _ = post(member["id"], "r1")
    # Then 502 platform_error carrying the platform's status and body
    assert status == 502
    assert body["error"]["code"] == "platform_error"
    assert body["error"]["platform_status"] == 401
    assert "error" in body["error"]["platform_response"]
    # And the ledger records a platform error, never a decline
    row = ledger(db, member["id"])
    assert (row["state"], row["declined_at"]) == ("error", None)
    assert running.orders == []


@responses.activate
@pytest.mark.parametrize(("status", "answer"), [(429, 503), (408, 502), (403, 502)])
def test_throttling_and_forbidden_are_platform_errors(db, member, monkeypatch, status, answer):
    # Given a platform answering `status`
    platforms.configure(monkeypatch, "https://platform.test")
    responses.post("https://platform.test/order/r1", status=status, json={"e": status})
    # When charged
    code, body, headers = post(member["id"], "r1")
    # Then 502 (503 with Retry-After for 429) with the platform's answer inside
    assert code == answer
    assert body["error"]["platform_status"] == status
    assert ("Retry-After" in headers) == (status == 429)
    assert ledger(db, member["id"])["state"] == "error"


@responses.activate
@pytest.mark.parametrize(
    ("sent", "passed_on"),
    [
        ("120", "120"),
        (" 7 ", "7"),
        ("Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"),
        (None, "60"),
        ("soon", "60"),
        ("-5", "60"),
        ("99999999", "60"),
        ("1e3", "60"),
    ],
)
def test_a_throttled_charge_passes_on_the_platforms_retry_after_when_valid(
    db, member, monkeypatch, sent, passed_on
):
    # Given a platform throttling us, with or without a Retry-After of its own
    platforms.configure(monkeypatch, "https://platform.test")
    extra = {"Retry-After": sent} if sent is not None else {}
    responses.post("https://platform.test/order/r1", status=429, json={"e": 1}, headers=extra)
    # When charged
    code, _, headers = post(member["id"], "r1")
    # Then 503 with the platform's value when it is seconds or a date, else 60 seconds
    assert code == 503
    assert headers["Retry-After"] == passed_on


def test_five_days_of_platform_refusals_cancel_nobody(db, now, member, monkeypatch):
    # Given a platform that refuses our key for the whole retry window and beyond
    with platforms.running(monkeypatch) as running:
        monkeypatch.setenv("ECOMM_API_SECRET", "rotated")
        settings.get.cache_clear()
        charge_handler.platform.cache_clear()
        for day in range(8):
            run_on(now, datetime(2026, 11, 1, 6) + timedelta(days=day))
        # Then nobody is cancelled and the period stays chargeable
        assert status_of(db, member["id"]) == 1
        assert ledger(db, member["id"])["state"] == "error"
        # When the key is fixed, the next run charges it
        monkeypatch.setenv("ECOMM_API_SECRET", platforms.SECRET)
        settings.get.cache_clear()
        charge_handler.platform.cache_clear()
        assert run_on(now, datetime(2026, 11, 10, 6))["charged"] == 1
        assert len(running.orders) == 1


def test_a_period_that_ends_after_platform_errors_only_is_abandoned_without_cancelling(
    db, now, member, monkeypatch
):
    # Given November errored at the platform every day
    with platforms.running(monkeypatch):
        monkeypatch.setenv("ECOMM_API_SECRET", "rotated")
        settings.get.cache_clear()
        charge_handler.platform.cache_clear()
        run_on(now, datetime(2026, 11, 28, 6))
        monkeypatch.setenv("ECOMM_API_SECRET", platforms.SECRET)
        settings.get.cache_clear()
        charge_handler.platform.cache_clear()
        # When December's first run comes
        counts = run_on(now, datetime(2026, 12, 1, 6))
    # Then November is abandoned, December charged, nobody cancelled
    assert counts["abandoned"] == 1
    assert counts["charged"] == 1
    assert status_of(db, member["id"]) == 1


def test_a_missing_secret_answers_503_and_writes_nothing(db, member, monkeypatch):
    # Given no secret configured
    platforms.configure(monkeypatch, "https://platform.test")
    monkeypatch.delenv("ECOMM_API_SECRET")
    settings.get.cache_clear()
    charge_handler.platform.cache_clear()
    # When charged
    status, body, _ = post(member["id"], "r1")
    # Then 503 and no ledger row, no claimed request id
    assert (status, body["error"]["code"]) == (503, "platform_not_configured")
    assert builders.count(db, "charge") == 0
    assert builders.count(db, "platform_request") == 0


# --- point 5: periods ------------------------------------------------------------------


def test_a_member_declined_on_the_29th_who_paid_december_is_not_cancelled_for_november(
    db, now, platform
):
    # Given a member who joined on 29 November and was declined that day
    now(datetime(2026, 11, 29, 5))
    sub = builders.subscription(db, builders.club(db))
    builders.subscription_started(db, sub, datetime(2026, 11, 29, 5))
    platform.set_mode("reject", times=1)
    assert run_on(now, datetime(2026, 11, 29, 6))["failed"] == 1
    # And November declined again on its retries while December was paid
    platform.set_mode("reject", times=1)
    counts = run_on(now, datetime(2026, 12, 1, 6))
    assert (counts["failed"], counts["charged"]) == (1, 1)
    platform.set_mode("reject", times=2)
    for day in (2, 3):
        assert run_on(now, datetime(2026, 12, day, 6))["failed"] == 1
    # And its window closed on 4 December: abandoned, not cancelled (December is paid)
    assert run_on(now, datetime(2026, 12, 4, 6))["abandoned"] == 1
    # When January's first run comes, November's window long closed
    counts = run_on(now, datetime(2027, 1, 1, 6))
    # Then November is abandoned, nobody is cancelled, and January is charged
    assert counts["cancelled"] == 0
    assert status_of(db, sub) == 1
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT period, state FROM charge WHERE subscription_id = :s"), {"s": sub}
        )
        states = dict(rows.all())
    assert states == {"2026-11": "abandoned", "2026-12": "succeeded", "2027-01": "succeeded"}


# --- point 6: schedules ----------------------------------------------------------------


def test_a_schedule_added_mid_month_never_bills_the_paid_month_again(db, now, platform):
    # Given a member of a club without a schedule, charged for November on the 1st
    now(datetime(2026, 10, 5, 8))
    club = builders.club(db)
    sub = builders.subscription(db, club)
    builders.subscription_started(db, sub, datetime(2026, 10, 5, 8))
    assert run_on(now, datetime(2026, 11, 1, 6))["charged"] == 1
    # When an operator inserts an anniversary schedule on 21 November (plain SQL)
    builders.billing_schedule(db, club, "monthly", True, changed_at=datetime(2026, 11, 21))
    # Then the rest of November bills nothing, nor do 1-4 December (the change waits for
    # the first anniversary boundary after the paid month)
    assert run_on(now, datetime(2026, 11, 22, 6))["charged"] == 0
    assert run_on(now, datetime(2026, 12, 2, 6))["charged"] == 0
    # And the anniversary schedule bills from 5 December
    assert run_on(now, datetime(2026, 12, 5, 6))["charged"] == 1
    with db.connect() as conn:
        periods = conn.scalars(
            text("SELECT period FROM charge WHERE subscription_id = :s ORDER BY id"), {"s": sub}
        ).all()
    assert periods == ["2026-11", "2026-12-05"]
    assert len(platform.orders) == 2


def test_an_operator_update_of_a_schedule_stores_when_and_what_it_replaced(db, now):
    # Given a quarterly schedule
    club = builders.club(db)
    builders.billing_schedule(db, club, "quarterly")
    # When an operator changes it with plain SQL
    with db.begin() as conn:
        conn.execute(
            text("UPDATE billing_schedule SET interval = 'annual' WHERE club_id = :c"), {"c": club}
        )
        row = (
            conn.execute(text("SELECT * FROM billing_schedule WHERE club_id = :c"), {"c": club})
            .mappings()
            .one()
        )
    # Then the trigger kept the previous schedule and when it changed
    assert (row["previous_interval"], row["previous_anniversary"]) == ("quarterly", False)
    assert row["changed_at"] > builders.SCHEDULE_SINCE


# --- point 7: card reports -------------------------------------------------------------


def test_a_card_report_does_not_cancel_a_subscription_created_after_it(db, now, platform):
    # Given a card report for a customer, then a new subscription of that customer
    customer = builders.unique_customer()
    now(datetime(2026, 11, 1, 5))
    send(new_event("card-unavailable", customer_id=customer, reason="expired"), now.value())
    now(datetime(2026, 11, 2, 5))
    sub = builders.subscription(db, builders.club(db), customer=customer)
    builders.subscription_started(db, sub, datetime(2026, 11, 2, 5))
    # When the run comes, Then it charges, not cancels
    counts = run_on(now, datetime(2026, 11, 2, 6))
    assert (counts["charged"], counts["cancelled"]) == (1, 0)
    assert status_of(db, sub) == 1


def test_a_successful_charge_clears_an_earlier_card_report(db, now, member, platform):
    # Given a card report for the member's customer
    send(new_event("card-unavailable", customer_id=member["customer"], reason="expired"))
    # When a later charge succeeds (the customer updated the card)
    now(NOW + timedelta(minutes=1))
    assert post(member["id"], "r1")[0] == 201
    # Then the report is cleared, audited
    assert builders.count(db, "card_unavailable") == 0
    assert any(a["action"] == "card_cleared" for a in builders.audit(db, member["id"]))


# --- point 9: nothing stuck --------------------------------------------------------------


def test_a_cancellation_re_reads_the_ledger_and_voids_itself_for_a_period_paid_meanwhile(
    db, now, member, platform
):
    # Given a period declined, its window closed
    platform.set_mode("reject", times=1)
    run_on(now, datetime(2026, 11, 1, 6))
    request_id = ledger(db, member["id"])["request_id"]
    now(datetime(2026, 11, 7, 6))
    planned = [p.message for p in billing.plan(SqlAlchemyUnitOfWork(), now.value()) if p.message]
    assert [m.step for m in planned] == [billing.Step.CANCEL]
    # When the platform reports the order paid after all, before the worker runs
    with db.begin() as conn:
        conn.execute(text("UPDATE charge SET state = 'unknown'"))
    send(outcome(request_id, "success"), now.value())
    outcome_ = billing_run_settle(planned[0])
    # Then nobody is cancelled
    assert outcome_ == billing.Outcome.ALREADY_CHARGED
    assert status_of(db, member["id"]) == 1


def billing_run_settle(message):
    from handlers import billing_charge

    return billing_charge.settle_one(message)
