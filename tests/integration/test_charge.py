"""POST /subscription/{id}/charge/{request_id}: exactly once per month, whatever happens.

The platform is the fake e-commerce server, a real HTTP server on localhost.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import responses
from sqlalchemy import text

from common import settings
from fake_ecommerce import server as fake
from handlers import charge as charge_handler
from repositories import charges as charge_repository
from tests import builders
from tests.events import api_event, invoke
from tests.platforms import KEY, SECRET, configure


@pytest.fixture
def platform(monkeypatch, database_url):
    log = io.StringIO()
    with fake.start(api_key=KEY, api_secret=SECRET, log_stream=log) as running:
        configure(monkeypatch, running.base_url, timeout=1.0)
        yield running
    settings.get.cache_clear()
    charge_handler.platform.cache_clear()


@pytest.fixture
def member(db, now):
    club = builders.club(db, sku=4242)
    customer = builders.unique_customer()
    return {
        "id": builders.subscription(db, club, customer=customer),
        "customer": customer,
        "club": club,
    }


def post(sub_id: str, request_id: str):
    event = api_event(
        "POST",
        "/subscription/{id}/charge/{request_id}",
        {"id": sub_id, "request_id": request_id},
    )
    return invoke(charge_handler.lambda_handler, event)


def ledger(db, sub_id: str) -> dict:
    with db.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM charge WHERE subscription_id = :s"), {"s": sub_id})
            .mappings()
            .one()
        )
    return dict(row)


def attempts(db, sub_id: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.* FROM charge_attempt a JOIN charge c ON c.id = a.charge_id"
                " WHERE c.subscription_id = :s ORDER BY attempt"
            ),
            {"s": sub_id},
        ).mappings()
        return [dict(r) for r in rows]


def wait_for(condition, seconds: float = 5.0) -> None:
    """Bounded wait for the fake platform's own slow thread, never for our code."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the fake platform did not finish in time"
        time.sleep(0.05)


def test_an_eligible_subscription_is_charged_and_the_platform_answer_relayed(db, member, platform):
    # Given an eligible subscription and a healthy platform
    # When the billing operation charges it
    status, body, _ = post(member["id"], "req-1")
    # Then the platform got one order with the customer and the club's SKU
    assert status == 201
    assert body["request_id"] == "req-1"
    assert [(o["customer_id"], o["sku_id"]) for o in platform.orders] == [
        (member["customer"], 4242)
    ]
    # And the ledger says succeeded after one attempt, with the platform's answer
    row = ledger(db, member["id"])
    assert (row["state"], row["attempts"], row["period"], row["platform_status"]) == (
        "succeeded",
        1,
        "2026-11",
        201,
    )
    assert json.loads(row["platform_body"])["order_id"] == body["order_id"]


@responses.activate
def test_the_call_carries_the_configured_headers_body_and_url(db, member, monkeypatch):
    # Given a platform reached through `responses`
    configure(monkeypatch, "https://platform.test/base/")
    responses.post("https://platform.test/base/order/req%2F1", status=201, json={"ok": True})
    # When a charge is placed with a request id that needs escaping
    status, body, _ = post(member["id"], "req/1")
    # Then the call had the key, the secret and the JSON body
    assert (status, body) == (201, {"ok": True})
    call = responses.calls[0].request
    assert call.headers["x-api-key"] == KEY
    assert call.headers["x-api-secret"] == SECRET
    assert json.loads(call.body) == {"customer_id": member["customer"], "sku_id": 4242}


def test_a_month_already_charged_is_replayed_without_calling_out(db, member, platform):
    # Given a subscription charged this month
    first = post(member["id"], "req-1")[1]
    # When the charge is requested again, even with another request id
    status, body, _ = post(member["id"], "req-2")
    # Then 200 with the recorded charge, and the platform saw one call
    assert status == 200
    assert body["replayed"] is True
    assert body["request_id"] == "req-1"
    assert body["state"] == "succeeded"
    assert body["platform_response"]["order_id"] == first["order_id"]
    assert platform.calls == 1


def test_the_next_calendar_month_is_charged_again(db, member, platform, now):
    # Given a charge on 30 November
    now(datetime(2026, 11, 30, 23, 59, 59))
    assert post(member["id"], "nov")[0] == 201
    # When charged again a second later, in December (UTC)
    now(datetime(2026, 12, 1, 0, 0, 0))
    status, _, _ = post(member["id"], "dec")
    # Then it is a new charge for the new period
    assert status == 201
    assert len(platform.orders) == 2


def test_a_platform_4xx_is_relayed_recorded_failed_and_the_month_stays_chargeable(
    db, member, platform
):
    # Given a platform that declines the next payment
    platform.set_mode("reject", times=1)
    # When charged
    status, body, _ = post(member["id"], "req-1")
    # Then the 4xx is relayed and recorded as failed
    assert (status, body) == (422, {"error": "payment declined"})
    assert ledger(db, member["id"])["state"] == "failed"
    # And a retry with a new request id is sent with that id and succeeds
    status, body, _ = post(member["id"], "req-2")
    assert status == 201
    assert body["request_id"] == "req-2"
    assert ledger(db, member["id"])["attempts"] == 2


def test_a_platform_5xx_is_a_502_and_the_retry_reuses_the_first_request_id(db, member, platform):
    # Given a failing platform
    platform.set_mode("fail", times=1)
    # When charged
    status, body, _ = post(member["id"], "req-1")
    # Then 502, the outcome unknown
    assert status == 502
    assert body["error"]["code"] == "platform_error"
    assert body["error"]["platform_status"] == 500
    assert ledger(db, member["id"])["state"] == "unknown"
    # And the retry sends req-1 again, whatever id the caller gives now
    status, body, _ = post(member["id"], "req-2")
    assert status == 201
    assert body["request_id"] == "req-1"
    assert [a["request_id"] for a in attempts(db, member["id"])] == ["req-1", "req-1"]


def test_a_timeout_is_a_504_and_the_retry_lets_the_platform_deduplicate(db, member, platform):
    # Given a platform slower than our 1 s timeout (it still creates the order)
    platform.set_mode("slow", delay=1.5, times=1)
    # When charged
    status, body, _ = post(member["id"], "req-1")
    # Then 504, the month still chargeable
    assert status == 504
    assert body["error"]["code"] == "platform_timeout"
    assert ledger(db, member["id"])["state"] == "unknown"
    # And the retry reuses req-1, so the platform keeps one order for both calls
    status, body, _ = post(member["id"], "req-2")
    assert status in (200, 201)
    assert body["request_id"] == "req-1"
    wait_for(lambda: platform.calls == 2)
    assert len(platform.orders) == 1
    assert ledger(db, member["id"])["state"] == "succeeded"


def test_a_connection_dropped_after_sending_is_unknown_and_retried_with_the_same_id(
    db, member, platform
):
    # Given a platform that processes the order and then drops the connection
    platform.set_mode("drop", times=1)
    # When charged
    status, body, _ = post(member["id"], "req-1")
    # Then 502 unreachable, outcome unknown
    assert status == 502
    assert body["error"]["code"] == "platform_unreachable"
    assert ledger(db, member["id"])["state"] == "unknown"
    # And the retry reuses req-1: still one order
    assert post(member["id"], "req-2")[0] == 200
    assert len(platform.orders) == 1


def test_an_unreachable_platform_is_a_502_and_the_month_stays_chargeable(db, member, monkeypatch):
    # Given nothing listening where the platform should be
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configure(monkeypatch, f"http://127.0.0.1:{port}")
    # When charged
    status, body, _ = post(member["id"], "req-1")
    # Then 502, recorded as a platform error (the order was never sent; not a decline)
    assert status == 502
    assert body["error"]["code"] == "platform_unreachable"
    assert "chargeable" in body["error"]["message"]
    assert ledger(db, member["id"])["state"] == "error"
    # And once it is back, a retry goes through under the id already sent (not a decline)
    with fake.start(api_key=KEY, api_secret=SECRET, log_stream=io.StringIO()) as running:
        configure(monkeypatch, running.base_url)
        status, body, _ = post(member["id"], "req-2")
    assert status == 201
    assert body["request_id"] == "req-1"


def test_malformed_json_from_the_platform_is_recorded_and_wrapped(db, member, platform):
    # Given a platform answering 200 with a body that is not JSON (the order was made)
    platform.set_mode("garbage", times=1)
    # When charged
    status, body, _ = post(member["id"], "req-1")
    # Then the status is relayed and the text wrapped; the month counts as charged
    assert (status, body) == (200, {"platform_response": "not json{"})
    assert ledger(db, member["id"])["state"] == "succeeded"
    replay = post(member["id"], "req-2")
    assert replay[0] == 200
    assert replay[1]["platform_response"] == "not json{"
    assert platform.calls == 1


def test_a_crash_between_calling_out_and_recording_never_sends_a_new_request_id(
    db, member, platform, now, monkeypatch
):
    # Given a Lambda that dies right after the platform answered
    def crash(*args, **kwargs):
        raise RuntimeError("container killed")

    monkeypatch.setattr(charge_repository.SqlAlchemyChargeRepository, "record", crash)
    status, _, _ = post(member["id"], "req-1")
    assert status == 500
    monkeypatch.undo()
    configure(monkeypatch, platform.base_url)
    # When retried before the pending row is stale, it is in progress
    status, body, _ = post(member["id"], "req-2")
    assert status == 409
    assert body["error"]["code"] == "charge_in_progress"
    # When retried after the Lambda timeout, the first request id is sent again
    now(now.value() + timedelta(seconds=61))
    status, body, _ = post(member["id"], "req-3")
    # Then the platform deduplicated it: one order, and the ledger is settled
    assert status == 200
    assert body["duplicate"] is True
    assert len(platform.orders) == 1
    assert [a["request_id"] for a in attempts(db, member["id"])] == ["req-1", "req-1"]
    assert ledger(db, member["id"])["state"] == "succeeded"


@pytest.mark.parametrize(
    ("sub_status", "club_status", "reason"),
    [
        (2, 1, "CANCELLED"),
        (3, 1, "PAUSED"),
        (None, 1, "unset"),
        (1, 3, "INACTIVE"),
        (1, None, "without status"),
    ],
)
def test_a_subscription_that_is_not_eligible_is_a_409_without_calling_out(
    db, now, platform, sub_status, club_status, reason
):
    # Given a subscription that is not active, or whose club does not ship
    club = builders.club(db, status_id=club_status)
    sub = builders.subscription(db, club, status_id=sub_status)
    # When charged
    status, body, _ = post(sub, "req-1")
    # Then 409 says why, and nothing was sent or recorded
    assert status == 409
    assert body["error"]["code"] == "subscription_not_eligible"
    assert reason in body["error"]["message"]
    assert platform.calls == 0
    assert builders.count(db, "charge") == 0


def test_members_of_a_closed_club_are_still_charged(db, now, platform):
    club = builders.club(db, status_id=2)
    assert post(builders.subscription(db, club), "req-1")[0] == 201


def test_a_club_without_sku_cannot_be_charged(db, now, platform):
    club = builders.club(db, sku=None)
    status, body, _ = post(builders.subscription(db, club), "req-1")
    assert status == 409
    assert "SKU" in body["error"]["message"]


def test_an_unknown_subscription_is_a_404_without_calling_out(db, now, platform):
    status, body, _ = post("00000000-0000-000-00000-000000000000", "req-1")
    assert status == 404
    assert body["error"]["code"] == "subscription_not_found"
    assert platform.calls == 0


@pytest.mark.parametrize(
    "params",
    [
        {"id": "x" * 5000, "request_id": "r"},
        {"id": "s", "request_id": "r" * 37},
        {"id": "s", "request_id": "a\x00"},
        {"id": "s"},
    ],
)
def test_bad_ids_in_the_path_are_a_400_without_calling_out(db, platform, params):
    event = api_event("POST", "/subscription/{id}/charge/{request_id}", params)
    status, body, _ = invoke(charge_handler.lambda_handler, event)
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert platform.calls == 0


def test_twelve_parallel_charges_make_exactly_one_outbound_call(db, member, platform):
    # Given a platform that takes half a second to answer
    platform.set_mode("slow", delay=0.5)
    barrier = threading.Barrier(12)

    def attempt(n):
        barrier.wait()
        return post(member["id"], f"req-{n}")

    # When twelve identical charges arrive together
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(attempt, range(12)))
    # Then one call went out: one 201, the others 409 in progress (or 200 replayed)
    statuses = sorted(r[0] for r in results)
    assert platform.calls == 1
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 409}
    assert builders.count(db, "charge") == 1


def test_charging_without_a_configured_secret_is_a_503(db, member, monkeypatch):
    configure(monkeypatch, "http://127.0.0.1:9")
    monkeypatch.delenv("ECOMM_API_SECRET")
    settings.get.cache_clear()
    status, body, _ = post(member["id"], "req-1")
    assert status == 503
    assert body["error"]["code"] == "platform_not_configured"


def test_the_secret_never_reaches_the_logs_or_the_answer(db, member, platform, logs):
    # Given charges that succeed and that fail
    post(member["id"], "req-1")
    platform.set_mode("fail")
    other = builders.subscription(db, member["club"])
    _, body, _ = post(other, "req-2")
    # Then neither the logs nor the answers contain the secret
    messages = [line["message"] for line in logs()]
    assert "charge placed" in messages
    assert "charge failed at the platform" in messages
    assert SECRET not in logs.text()
    assert member["customer"] not in logs.text()
    assert SECRET not in json.dumps(body)
