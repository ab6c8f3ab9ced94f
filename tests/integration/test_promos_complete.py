"""POST /promos/{id}/reservations/{reservation_id}/complete: the order placed once, on the
fake e-commerce platform (a real HTTP server), with the injected clock."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta

import pytest

from adapters import promo_platform
from common import settings
from domain.promo_model import OrderState, order_request_id
from fake_ecommerce import server as fake
from handlers import charge as charge_handler
from handlers import promos_complete, promos_eligible, promos_reserve
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from tests import builders
from tests import promo_builders as pb
from tests.conftest import NOW
from tests.events import api_event, invoke
from tests.platforms import KEY, SECRET, configure

LISBON = (38.7223, -9.1393)


@pytest.fixture
def platform(monkeypatch, database_url):
    with fake.start(api_key=KEY, api_secret=SECRET, log_stream=io.StringIO()) as running:
        configure(monkeypatch, running.base_url, timeout=1.0)
        promo_platform.platform.cache_clear()
        yield running
    settings.get.cache_clear()
    promo_platform.platform.cache_clear()


@pytest.fixture
def held(db, now, platform):
    """A one-unit promo, and a customer holding it since NOW."""
    store = pb.store(db, *LISBON)
    promo = pb.promo(db, store, NOW - timedelta(minutes=5), sku=8123, unit_price="12.50")
    customer = pb.customer(db, *LISBON)
    status, body, _ = reserve(promo, customer)
    assert status == 201
    return {"promo": promo, "customer": customer, "reservation": body["reservation_id"]}


def reserve(promo_id, customer_id):
    event = api_event(
        "POST", "/promos/{id}/reservations", {"id": str(promo_id)}, {"customer_id": customer_id}
    )
    return invoke(promos_reserve.lambda_handler, event)


def complete(promo_id, reservation_id):
    event = api_event(
        "POST",
        "/promos/{id}/reservations/{reservation_id}/complete",
        {"id": str(promo_id), "reservation_id": reservation_id},
    )
    return invoke(promos_complete.lambda_handler, event)


def order_row(db, reservation_id):
    (row,) = pb.rows(db, "SELECT * FROM promo_order WHERE reservation_id = :r", r=reservation_id)
    return row


def reservation_state(db, reservation_id):
    return pb.rows(db, "SELECT state FROM promo_reservation WHERE id = :r", r=reservation_id)[0][
        "state"
    ]


def test_completing_inside_the_minute_places_the_order_with_the_promo_price(
    db, held, now, platform
):
    # Given a hold taken 59 seconds ago
    now(NOW + timedelta(seconds=59))
    # When the customer completes the purchase
    status, body, _ = complete(held["promo"], held["reservation"])
    # Then the platform got one order with the customer, the SKU and the promo's price
    assert status == 200
    assert body["state"] == "sold"
    assert body["order"]["state"] == "succeeded"
    (order,) = platform.orders
    assert order["customer_id"] == held["customer"]
    assert order["sku_id"] == 8123
    assert order["unit_price"] == "12.50"
    # And the request id was derived by the server from the reservation
    assert order["request_id"] == order_request_id(held["reservation"], 1)
    assert body["order"]["request_id"] == order["request_id"]
    # And the promo is gone for everyone, even after the hold would have expired
    now(NOW + timedelta(minutes=5))
    other = pb.customer(db, *LISBON)
    assert reserve(held["promo"], other)[1]["error"]["code"] == "promo_unavailable"
    event = api_event("GET", "/promos/eligible", query={"customer_id": other})
    assert [
        p
        for p in invoke(promos_eligible.lambda_handler, event)[1]
        if p["promo_id"] == held["promo"]
    ] == []
    # And the buyer cannot take a second unit
    assert reserve(held["promo"], held["customer"])[1]["error"]["code"] == "already_purchased"


def test_completing_again_replays_the_sale_without_calling_out(db, held, platform):
    complete(held["promo"], held["reservation"])
    status, body, _ = complete(held["promo"], held["reservation"])
    assert (status, body["replayed"], body["state"]) == (200, True, "sold")
    assert platform.calls == 1


def test_completion_after_expiry_is_410_and_calls_nothing(db, held, now, platform):
    now(NOW + timedelta(seconds=61))
    status, body, _ = complete(held["promo"], held["reservation"])
    assert (status, body["error"]["code"]) == (410, "reservation_expired")
    assert platform.calls == 0
    assert (
        pb.rows(db, "SELECT * FROM promo_order WHERE reservation_id = :r", r=held["reservation"])
        == []
    )


def test_completion_exactly_at_expiry_is_410(db, held, now, platform):
    now(NOW + timedelta(seconds=60))
    assert complete(held["promo"], held["reservation"])[0] == 410


def test_completion_after_the_unit_went_to_someone_else_is_410(db, held, now, platform):
    now(NOW + timedelta(seconds=61))
    assert reserve(held["promo"], pb.customer(db, *LISBON))[0] == 201
    status, body, _ = complete(held["promo"], held["reservation"])
    assert (status, body["error"]["code"]) == (410, "reservation_expired")
    assert platform.calls == 0


def test_completion_racing_expiry_keeps_the_unit_while_the_platform_answers(
    db, held, now, platform
):
    # Given a slow platform (answers after 0.6 s, within our 1 s timeout)
    platform.set_mode("slow", delay=0.6, times=1)
    now(NOW + timedelta(seconds=59))
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(done=complete(held["promo"], held["reservation"]))
    )
    # When the completion is in flight and the minute runs out meanwhile
    worker.start()
    deadline = time.monotonic() + 5
    while reservation_state(db, held["reservation"]) != "purchasing":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    now(NOW + timedelta(seconds=90))
    # Then nobody else can take the unit, and a second completion is told to wait
    assert reserve(held["promo"], pb.customer(db, *LISBON))[1]["error"]["code"] == (
        "promo_unavailable"
    )
    assert complete(held["promo"], held["reservation"])[1]["error"]["code"] == (
        "purchase_in_progress"
    )
    worker.join()
    # And the platform's acceptance sells it to the customer who completed in time
    assert result["done"][0] == 200
    assert result["done"][1]["state"] == "sold"
    assert len(platform.orders) == 1


def test_a_failing_platform_keeps_the_unit_and_the_retry_reuses_the_request_id(
    db, held, now, platform
):
    # Given a platform that fails once with a 500
    platform.set_mode("fail", times=1)
    status, body, _ = complete(held["promo"], held["reservation"])
    assert status == 502
    assert "reservation is kept" in body["error"]["message"]
    assert "month" not in body["error"]["message"]
    order = order_row(db, held["reservation"])
    assert order["state"] == OrderState.UNKNOWN
    # When the minute has long passed
    now(NOW + timedelta(minutes=10))
    # Then the unit is not given away: the outcome is unknown, the hold is purchasing
    assert reserve(held["promo"], pb.customer(db, *LISBON))[0] == 409
    assert reservation_state(db, held["reservation"]) == "purchasing"
    # When the customer (or support) completes again
    status, body, _ = complete(held["promo"], held["reservation"])
    # Then the same request id went out and the unit is sold once
    assert status == 200
    assert body["order"]["request_id"] == order["request_id"]
    assert body["order"]["attempts"] == 2
    assert len(platform.orders) == 1


def test_a_timeout_then_retry_sells_once_even_though_the_platform_took_the_first(
    db, held, platform
):
    # Given a platform slower than our 1 s timeout (it creates the order anyway)
    platform.set_mode("slow", delay=1.5, times=1)
    status, body, _ = complete(held["promo"], held["reservation"])
    assert (status, body["error"]["code"]) == (504, "platform_timeout")
    time.sleep(0.6)  # the fake finishes creating the first order
    # When completed again
    status, body, _ = complete(held["promo"], held["reservation"])
    # Then the platform deduplicated the same request id: one order, sold once
    assert status == 200
    assert len(platform.orders) == 1
    assert pb.rows(
        db,
        "SELECT count(*) AS n FROM promo_unit WHERE promo_id = :p AND sold_at IS NOT NULL",
        p=held["promo"],
    ) == [{"n": 1}]


def test_a_refused_order_gives_the_hold_back_until_its_own_expiry(db, held, now, platform):
    # Given the platform declines the card once
    platform.set_mode("reject", times=1)
    now(NOW + timedelta(seconds=20))
    status, body, _ = complete(held["promo"], held["reservation"])
    # Then the refusal is relayed and the hold is the customer's again
    assert (status, body["error"]["code"]) == (422, "order_refused")
    assert body["error"]["reservation"]["state"] == "held"
    first_id = order_row(db, held["reservation"])["request_id"]
    assert reserve(held["promo"], pb.customer(db, *LISBON))[0] == 409
    # When the customer tries again inside the minute: a new order, with a new request id
    status, body, _ = complete(held["promo"], held["reservation"])
    assert status == 200
    assert body["order"]["request_id"] == order_request_id(held["reservation"], 2) != first_id


def test_a_refused_order_after_the_minute_frees_the_unit(db, held, now, platform):
    platform.set_mode("reject", times=1)
    now(NOW + timedelta(seconds=59))
    complete(held["promo"], held["reservation"])
    now(NOW + timedelta(seconds=61))
    assert complete(held["promo"], held["reservation"])[0] == 410
    assert reserve(held["promo"], pb.customer(db, *LISBON))[0] == 201


def test_an_unreachable_platform_gives_the_hold_back(db, held, monkeypatch):
    # Given a platform nobody listens to (the order cannot have been sent)
    configure(monkeypatch, "http://127.0.0.1:9", timeout=1.0)
    promo_platform.platform.cache_clear()
    status, body, _ = complete(held["promo"], held["reservation"])
    assert (status, body["error"]["code"]) == (502, "platform_unreachable")
    assert reservation_state(db, held["reservation"]) == "held"
    assert order_row(db, held["reservation"])["state"] == OrderState.FAILED


def test_promo_orders_are_listed_for_reconciliation(db, held, platform):
    platform.set_mode("fail", times=1)
    complete(held["promo"], held["reservation"])
    uow = SqlAlchemyUnitOfWork()
    with uow:
        unknown = uow.promo_orders.list_for_reconciliation([OrderState.UNKNOWN], limit=10_000)
        everything = uow.promo_orders.list_for_reconciliation(limit=10_000)
    mine = [o for o in unknown if o.reservation_id == held["reservation"]]
    assert [(o.request_id, o.state) for o in mine] == [
        (order_request_id(held["reservation"], 1), OrderState.UNKNOWN)
    ]
    assert any(o.reservation_id == held["reservation"] for o in everything)


@pytest.mark.parametrize(
    ("promo_id", "reservation_id", "status", "code"),
    [
        ("x", "r", 400, "invalid_request"),
        ("-1", "r", 400, "invalid_request"),
        ("1", "r" * 37, 400, "invalid_request"),
        ("1", " ", 400, "invalid_request"),
        ("1", "unknown-reservation", 404, "reservation_not_found"),
    ],
)
def test_complete_bad_input_is_a_clear_4xx_and_writes_nothing(
    db, platform, promo_id, reservation_id, status, code
):
    before = pb.rows(db, "SELECT count(*) AS n FROM promo_order")
    answer = complete(promo_id, reservation_id)
    assert (answer[0], answer[1]["error"]["code"]) == (status, code)
    assert pb.rows(db, "SELECT count(*) AS n FROM promo_order") == before
    assert platform.calls == 0


def test_a_reservation_completed_under_another_promo_is_404(db, held, platform):
    status, body, _ = complete(held["promo"] + 1, held["reservation"])
    assert (status, body["error"]["code"]) == (404, "reservation_not_found")
    assert platform.calls == 0


def test_a_platform_refusing_our_credentials_is_a_502_and_the_hold_stays(
    db, held, monkeypatch, platform
):
    # Given our secret is wrong (the platform answers 401)
    monkeypatch.setenv("ECOMM_API_SECRET", "wrong-secret")
    settings.get.cache_clear()
    promo_platform.platform.cache_clear()
    status, body, _ = complete(held["promo"], held["reservation"])
    assert (status, body["error"]["code"], body["error"]["platform_status"]) == (
        502,
        "platform_error",
        401,
    )
    assert reservation_state(db, held["reservation"]) == "held"


# --- one request-id registry for charges and promo orders (issues 12 and 17) -------------


def charge(subscription_id: str, request_id: str):
    event = api_event(
        "POST",
        "/subscription/{id}/charge/{request_id}",
        {"id": subscription_id, "request_id": request_id},
    )
    return invoke(charge_handler.lambda_handler, event)


def test_a_charge_with_a_promo_orders_request_id_answers_409_and_calls_nothing(
    db, held, now, platform
):
    # Given a promo order placed under its derived request id
    assert complete(held["promo"], held["reservation"])[0] == 200
    request_id = order_row(db, held["reservation"])["request_id"]
    calls = platform.calls
    # When a subscription is charged with that request id
    sub = builders.subscription(db, builders.club(db, sku=42))
    status, body, _ = charge(sub, request_id)
    # Then 409 request_id_in_use, nothing called, no ledger row
    assert (status, body["error"]["code"]) == (409, "request_id_in_use")
    assert platform.calls == calls
    assert builders.count(db, "charge", "subscription_id = :s", s=sub) == 0


def test_a_promo_order_whose_request_id_a_charge_sent_answers_409_and_calls_nothing(
    db, held, now, platform
):
    # Given a charge that sent the request id the promo order would derive
    sub = builders.subscription(db, builders.club(db, sku=42))
    assert charge(sub, order_request_id(held["reservation"], 1))[0] == 201
    calls = platform.calls
    # When the customer completes the purchase
    status, body, _ = complete(held["promo"], held["reservation"])
    # Then 409 request_id_in_use, nothing called, no promo order written
    assert (status, body["error"]["code"]) == (409, "request_id_in_use")
    assert platform.calls == calls
    assert (
        pb.rows(db, "SELECT 1 FROM promo_order WHERE reservation_id = :r", r=held["reservation"])
        == []
    )
