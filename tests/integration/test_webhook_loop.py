"""The whole loop: we charge, the fake platform answers and later sends signed webhooks.

The webhooks arrive over HTTP at a small local server that hands them, as API Gateway
events, to the webhook Lambda handler in-process. The clock is the system's: the fake
signs with the real time.
"""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import text

from common import settings
from fake_ecommerce import server as fake
from handlers import webhooks as webhook_handler
from tests import builders, platforms
from tests.events import api_event, invoke
from tests.integration.test_billing_schedule import post
from tests.webhook_events import WEBHOOK_SECRET


class _ApiGateway(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event = api_event(
            "POST", "/webhooks/ecommerce", raw_body=body.decode(), headers=dict(self.headers)
        )
        status, _, _ = invoke(webhook_handler.lambda_handler, event)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def loop(monkeypatch, database_url):
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _ApiGateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{gateway.server_address[1]}/webhooks/ecommerce"
    with fake.start(
        api_key=platforms.KEY,
        api_secret=platforms.SECRET,
        log_stream=io.StringIO(),
        webhook_url=url,
        webhook_secret=WEBHOOK_SECRET,
    ) as platform:
        platforms.configure(monkeypatch, platform.base_url)
        yield platform
    gateway.shutdown()
    settings.get.cache_clear()


def wait_for_webhooks(platform, count: int, seconds: float = 5.0) -> list[dict]:
    """Bounded wait for the fake platform's own delivery thread, never for our code."""
    deadline = time.monotonic() + seconds
    while len(platform.webhooks) < count:
        assert time.monotonic() < deadline, "the fake platform sent no webhook in time"
        time.sleep(0.02)
    return platform.webhooks


def charge_state(db, sub: str) -> str:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT state FROM charge WHERE subscription_id = :s"), {"s": sub}
        ).scalar_one()


def test_an_order_is_followed_by_a_signed_payment_outcome_we_accept(db, loop):
    # Given an eligible member
    sub = builders.subscription(db, builders.club(db))
    # When it is charged
    assert post(sub, "loop-1")[0] == 201
    # Then the platform sent a signed payment-outcome for that order, which we accepted
    (delivery,) = wait_for_webhooks(loop, 1)
    assert delivery["status"] == 200
    assert delivery["event"]["type"] == "payment-outcome"
    assert delivery["event"]["data"] == {"request_id": "loop-1", "outcome": "success"}
    assert builders.count(db, "webhook_event", "state = 'applied'") == 1
    # And the ledger is settled, whichever of the HTTP answer and the webhook came first
    assert charge_state(db, sub) == "succeeded"
    assert sorted(a["action"] for a in builders.audit(db, sub)) == [
        "charge_attempt",
        "charge_outcome",
        "payment_outcome",
    ]


def test_the_control_endpoint_emits_refunds_failures_and_card_events(db, loop):
    # Given a charged member
    customer = builders.unique_customer()
    sub = builders.subscription(db, builders.club(db), customer=customer)
    post(sub, "loop-2")
    wait_for_webhooks(loop, 1)
    control = f"{loop.base_url}/control/webhook"
    # When the platform is told to refund it, fail its payment and expire the card
    refund = requests.post(
        control, json={"type": "refund", "request_id": "loop-2", "reason": "broken"}, timeout=5
    )
    failure = requests.post(
        control,
        json={
            "type": "payment-outcome",
            "request_id": "loop-2",
            "outcome": "failure",
            "reason": "insufficient funds",
        },
        timeout=5,
    )
    card = requests.post(
        control,
        json={"type": "card-unavailable", "customer_id": customer, "reason": "expired"},
        timeout=5,
    )
    # Then each was delivered signed and accepted
    assert [r.json()["status"] for r in (refund, failure, card)] == [200, 200, 200]
    # And the refund is recorded, the paid period stays paid (the failure after its
    # success is a reversal for review), and the card flagged
    assert builders.count(db, "charge_refund", "request_id = 'loop-2'") == 1
    assert charge_state(db, sub) == "succeeded"
    assert builders.count(db, "charge_anomaly", "kind = 'reversal'") == 1
    assert builders.count(db, "card_unavailable", "customer_store_id = :c", c=customer) == 1
    # And the fake lists what it sent
    assert len(requests.get(f"{loop.base_url}/webhooks", timeout=5).json()) == 4


def test_the_control_endpoint_refuses_unknown_event_types(loop):
    # Given the fake, When asked to emit an unknown type, Then 400
    answer = requests.post(f"{loop.base_url}/control/webhook", json={"type": "x"}, timeout=5)
    assert answer.status_code == 400
