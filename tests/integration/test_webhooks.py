"""POST /webhooks/ecommerce: signed, deduplicated, applied in any order."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from common import settings
from domain import billing
from handlers import webhooks as webhook_handler
from scripts import billing_run
from tests import builders, platforms
from tests.events import invoke
from tests.integration.test_charge import ledger
from tests.webhook_events import WEBHOOK_SECRET, new_event, signed_event

NOW = datetime(2026, 11, 2, 9)


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch):
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings.get.cache_clear()
    yield
    settings.get.cache_clear()


@pytest.fixture
def member(db, now):
    now(NOW)
    customer = builders.unique_customer()
    sub = builders.subscription(db, builders.club(db), customer=customer)
    return {"id": sub, "customer": customer}


def charge_row(db, sub: str, state: str, request_id: str, period: str = "2026-11") -> None:
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at, billing_date)"
                " VALUES (:s, :p, :r, :st, 1, :n, :n, :n, :b)"
            ),
            {
                "s": sub,
                "p": period,
                "r": request_id,
                "st": state,
                "n": NOW,
                "b": datetime(2026, 11, 1),
            },
        )


def send(payload, sent_at: datetime = NOW, **options):
    return invoke(webhook_handler.lambda_handler, signed_event(payload, sent_at, **options))


def test_a_payment_success_settles_a_charge_whose_outcome_was_unknown(db, member):
    # Given a charge whose call timed out: outcome unknown
    charge_row(db, member["id"], "unknown", "req-unknown")
    # When the platform reports the payment succeeded
    event = new_event("payment-outcome", request_id="req-unknown", outcome="success")
    status, body, _ = send(event)
    # Then it is applied, the ledger says succeeded, and the audit names the event
    assert (status, body) == (200, {"event_id": event["event_id"], "result": "applied"})
    assert ledger(db, member["id"])["state"] == "succeeded"
    (entry,) = builders.audit(db, member["id"])
    assert (entry["action"], entry["actor"], entry["details"]) == (
        "payment_outcome",
        f"webhook:{event['event_id']}",
        "success",
    )


def test_a_timestamp_301_seconds_old_is_refused(db, member):
    # Given a correctly signed event sent 301 seconds ago
    charge_row(db, member["id"], "unknown", "req-1")
    event = new_event("payment-outcome", request_id="req-1", outcome="success")
    # When it arrives
    status, body, _ = send(event, sent_at=NOW - timedelta(seconds=301))
    # Then it is refused and nothing is recorded
    assert (status, body["error"]["code"]) == (400, "stale_timestamp")
    assert builders.count(db, "webhook_event") == 0
    assert ledger(db, member["id"])["state"] == "unknown"


def test_a_timestamp_300_seconds_old_is_still_accepted(db, member):
    # Given a correctly signed event sent exactly five minutes ago
    event = new_event("card-unavailable", customer_id=member["customer"], reason="expired")
    # When it arrives, Then it is applied
    assert send(event, sent_at=NOW - timedelta(seconds=300))[0] == 200


@pytest.mark.parametrize(
    "tamper",
    [
        {"secret": "not-the-secret"},
        {"headers": {"x-ecomm-signature": "v1=00"}},
        {"headers": {"x-ecomm-signature": ""}},
    ],
)
def test_a_webhook_without_a_valid_signature_is_401(db, member, tamper):
    # Given an event signed with the wrong secret, or not signed
    event = new_event("card-unavailable", customer_id=member["customer"], reason="expired")
    # When it arrives, Then it is refused with 401 and nothing is stored
    status, body, _ = send(event, **tamper)
    assert (status, body["error"]["code"]) == (401, "invalid_signature")
    assert builders.count(db, "webhook_event") == 0
    assert builders.count(db, "card_unavailable") == 0


def test_the_signature_covers_the_exact_raw_body_even_base64_encoded(db, member):
    # Given an event API Gateway delivered base64-encoded, with odd spacing kept as sent
    raw = (
        '{"event_id":"evt-b64",  "type":"card-unavailable",'
        f' "data":{{"customer_id":"{member["customer"]}","reason":"cancelled"}}}}'
    )
    # When it arrives, Then the signature over the decoded bytes is accepted
    status, body, _ = send(raw, base64_body=True)
    assert (status, body["result"]) == (200, "applied")


def test_a_replayed_event_id_is_a_200_no_op(db, member):
    # Given a payment failure already received for a charge whose outcome was unknown
    charge_row(db, member["id"], "unknown", "req-2")
    event = new_event("payment-outcome", request_id="req-2", outcome="failure", reason="fraud")
    assert send(event)[1]["result"] == "applied"
    # And the period charged again since
    with db.begin() as conn:
        conn.execute(text("UPDATE charge SET state = 'succeeded'"))
    # When the same event is delivered again
    status, body, _ = send(event)
    # Then it answers 200 as a duplicate and changes nothing
    assert (status, body["result"]) == (200, "duplicate")
    assert ledger(db, member["id"])["state"] == "succeeded"
    assert len(builders.audit(db, member["id"])) == 1


def test_a_refund_before_its_payment_outcome_is_applied_once_the_outcome_arrives(db, member):
    # Given a charge whose call is still in flight
    charge_row(db, member["id"], "pending", "req-3")
    refund = new_event("refund", request_id="req-3", reason="damaged bottles", amount=12.5)
    # When the refund arrives first
    assert send(refund)[1]["result"] == "pending"
    # Then it is kept, not applied
    assert builders.count(db, "charge_refund") == 0
    assert builders.count(db, "webhook_event", "state = 'pending'") == 1
    # When the payment outcome arrives
    outcome = new_event("payment-outcome", request_id="req-3", outcome="success")
    assert send(outcome)[1]["result"] == "applied"
    # Then the refund is recorded against the charge, and both events are applied
    with db.connect() as conn:
        refunds = conn.execute(text("SELECT * FROM charge_refund")).mappings().all()
    assert [(r["event_id"], r["reason"], float(r["amount"])) for r in refunds] == [
        (refund["event_id"], "damaged bottles", 12.5)
    ]
    assert builders.count(db, "webhook_event", "state = 'applied'") == 2
    actions = [a["action"] for a in builders.audit(db, member["id"])]
    assert actions == ["payment_outcome", "refund"]


def test_a_refund_of_a_succeeded_charge_is_recorded_at_once(db, member):
    # Given a succeeded charge, When its refund arrives
    charge_row(db, member["id"], "succeeded", "req-4")
    refund = new_event("refund", request_id="req-4", reason="customer complaint")
    # Then it is applied and recorded
    assert send(refund)[1]["result"] == "applied"
    assert builders.count(db, "charge_refund", "request_id = 'req-4'") == 1


def test_an_event_about_an_unknown_order_is_kept_pending(db, member):
    # Given no order with that request id, When its outcome arrives, Then it waits
    event = new_event("payment-outcome", request_id="never-sent", outcome="success")
    assert send(event)[1]["result"] == "pending"
    assert builders.count(db, "webhook_event", "state = 'pending'") == 1


def test_a_payment_failure_makes_the_period_chargeable_again(db, now, member, monkeypatch):
    # Given a period charged by the billing run, its outcome not known yet
    first_id = billing.request_id_for(member["id"], "2026-11")
    charge_row(db, member["id"], "unknown", first_id)
    # When the platform reports that payment failed
    event = new_event("payment-outcome", request_id=first_id, outcome="failure", reason="fraud")
    send(event)
    # Then the ledger says failed, with the reason
    row = ledger(db, member["id"])
    assert (row["state"], row["failure_reason"]) == ("failed", "payment failed: fraud")
    # When the next billing run comes, inside the retry window
    with platforms.running(monkeypatch) as platform:
        now(NOW + timedelta(days=1))
        counts = billing_run.run(io.StringIO())
    # Then it charged the period again, under a new request id
    assert counts["charged"] == 1
    assert [o["request_id"] for o in platform.orders] == [
        billing.request_id_for(member["id"], "2026-11", 1)
    ]


def test_a_card_unavailable_customer_is_cancelled_at_the_next_billing(db, now, member, monkeypatch):
    # Given a member charged for November
    charge_row(db, member["id"], "succeeded", "req-5")
    # When the platform reports the card expired
    event = new_event("card-unavailable", customer_id=member["customer"], reason="expired")
    assert send(event)[1]["result"] == "applied"
    with platforms.running(monkeypatch) as platform:
        # Then November's run leaves the paid period alone
        assert billing_run.run(io.StringIO())["cancelled"] == 0
        # And December's billing cancels instead of charging
        now(datetime(2026, 12, 1, 6))
        counts = billing_run.run(io.StringIO())
    assert counts["cancelled"] == 1
    assert platform.calls == 0
    status, _, details = builders.history(db, member["id"])[-1]
    assert status == 2
    assert details.startswith("Cancelled by billing: the customer's card is expired")
    assert [a["action"] for a in builders.audit(db, member["id"])][-1] == "cancellation"


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        {"event_id": "e1", "type": "nonsense", "data": {}},
        {"event_id": "e1", "type": "payment-outcome", "data": {"request_id": "r"}},
        {
            "event_id": "e1",
            "type": "payment-outcome",
            "data": {"request_id": "r", "outcome": "failure"},
        },
        {
            "event_id": "e1",
            "type": "card-unavailable",
            "data": {"customer_id": "c", "reason": "stolen"},
        },
        {"event_id": "", "type": "refund", "data": {"request_id": "r", "reason": "x"}},
    ],
)
def test_a_signed_but_malformed_event_is_400(db, member, payload):
    # Given a correctly signed body that is not a valid event, When it arrives, Then 400
    status, body, _ = send(payload)
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert builders.count(db, "webhook_event") == 0


def test_without_a_configured_secret_webhooks_answer_503(db, member, monkeypatch):
    # Given no webhook secret configured
    monkeypatch.delenv("WEBHOOK_SECRET")
    settings.get.cache_clear()
    # When an event arrives, Then 503 and nothing is stored
    event = new_event("card-unavailable", customer_id=member["customer"], reason="expired")
    status, body, _ = send(event)
    assert (status, body["error"]["code"]) == (503, "webhooks_not_configured")


def test_neither_the_secret_nor_the_signature_reaches_the_logs(db, member, capsys, caplog):
    # Given a signed event and a refused one
    event = new_event("card-unavailable", customer_id=member["customer"], reason="expired")
    accepted = signed_event(event, NOW)
    refused = signed_event(event, NOW, secret="another-secret")
    # When both arrive
    invoke(webhook_handler.lambda_handler, accepted)
    invoke(webhook_handler.lambda_handler, refused)
    # Then the logs hold neither the secret nor any signature
    logs = capsys.readouterr()
    output = logs.out + logs.err + "".join(str(vars(r)) for r in caplog.records)
    assert "webhook received" in output
    assert WEBHOOK_SECRET not in output
    for sent in (accepted, refused):
        assert sent["headers"]["x-ecomm-signature"].removeprefix("v1=") not in output


def test_webhooks_need_their_signature_but_no_api_key(db, member, monkeypatch):
    # Given a server that asks callers for an API key
    monkeypatch.setenv("API_KEY", "website-key,billing-key")
    settings.get.cache_clear()
    charge_row(db, member["id"], "unknown", "req-keyless")
    # When the platform sends a signed event without any x-api-key
    event = new_event("payment-outcome", request_id="req-keyless", outcome="success")
    status, body, _ = send(event)
    # Then the signature alone admits it
    assert (status, body["result"]) == (200, "applied")
