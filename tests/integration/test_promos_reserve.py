"""GET /promos/eligible and POST /promos/{id}/reservations on the real database, with the
injected clock: holds expire by the clock alone, units are never oversold."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from domain.promo_model import ReservationState
from handlers import promos_eligible, promos_reserve
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from tests import promo_builders as pb
from tests.conftest import NOW
from tests.events import api_event, invoke

LISBON = (38.7223, -9.1393)


def eligible(customer_id: str):
    event = api_event("GET", "/promos/eligible", query={"customer_id": customer_id})
    return invoke(promos_eligible.lambda_handler, event)


def reserve(promo_id, customer_id):
    event = api_event(
        "POST", "/promos/{id}/reservations", {"id": str(promo_id)}, {"customer_id": customer_id}
    )
    return invoke(promos_reserve.lambda_handler, event)


@pytest.fixture
def shop(db, now):
    store = pb.store(db, *LISBON)
    return {"store": store, "promo": pb.promo(db, store, NOW - timedelta(minutes=5))}


def test_customer_in_segment_and_radius_sees_the_running_promo(db, shop):
    # Given a customer 2 km from the store, in the promo's segment
    customer = pb.customer(db, pb.north_of(LISBON[0], 2.0), LISBON[1])
    # When they ask for their promos
    status, body, _ = eligible(customer)
    # Then the promo is there with store, SKU, distance, units left and end
    assert status == 200
    (promo,) = [p for p in body if p["promo_id"] == shop["promo"]]
    assert promo["store"]["id"] == shop["store"]
    assert promo["sku"] == 7001
    assert promo["distance_km"] == pytest.approx(2.0, abs=0.001)
    assert promo["units_left"] == 1
    assert promo["ends_at"] == (NOW + timedelta(hours=1, minutes=55)).isoformat()


def test_eligible_leaves_out_other_segments_far_customers_and_not_running_promos(db, now):
    # Given promos that started, will start, ended or were cancelled
    store = pb.store(db, *LISBON)
    running = pb.promo(db, store, NOW - timedelta(minutes=1))
    pb.promo(db, store, NOW + timedelta(minutes=1))
    pb.promo(db, store, NOW - timedelta(hours=3), NOW - timedelta(seconds=1))
    cancelled = pb.promo(db, store, NOW - timedelta(minutes=1))
    with db.begin() as conn:
        conn.exec_driver_sql(f"UPDATE promo SET cancelled_at = now() WHERE id = {cancelled}")
    other_segment = pb.customer(db, *LISBON, segments=("wine",))
    far = pb.customer(db, pb.north_of(LISBON[0], 5.01), LISBON[1])
    near = pb.customer(db, *LISBON)
    # Then only the running one is offered, and only to the near customer in the segment
    assert [p["promo_id"] for p in eligible(near)[1] if p["store"]["id"] == store] == [running]
    assert [p for p in eligible(other_segment)[1] if p["store"]["id"] == store] == []
    assert [p for p in eligible(far)[1] if p["store"]["id"] == store] == []


def test_reservation_holds_the_unit_for_sixty_seconds(db, shop, now):
    customer = pb.customer(db, *LISBON)
    # When the customer reserves
    status, body, _ = reserve(shop["promo"], customer)
    # Then the hold is theirs for a minute
    assert status == 201
    assert body["state"] == "held"
    assert body["expires_at"] == (NOW + timedelta(seconds=60)).isoformat()


def test_same_customer_asking_again_gets_the_same_live_hold(db, shop, now):
    customer = pb.customer(db, *LISBON)
    _, first, _ = reserve(shop["promo"], customer)
    now(NOW + timedelta(seconds=30))
    status, again, _ = reserve(shop["promo"], customer)
    assert status == 200
    assert again["reservation_id"] == first["reservation_id"]
    assert pb.rows(db, "SELECT id FROM promo_reservation WHERE customer_id = :c", c=customer) == [
        {"id": first["reservation_id"]}
    ]


def test_a_hold_at_59_seconds_still_blocks_others_and_at_61_it_is_offered_again(db, shop, now):
    # Given one unit held by a first customer
    first, second = pb.customer(db, *LISBON), pb.customer(db, *LISBON)
    _, held, _ = reserve(shop["promo"], first)
    # When 59 seconds have passed
    now(NOW + timedelta(seconds=59))
    # Then nobody else can take it, and it is not offered to them
    status, body, _ = reserve(shop["promo"], second)
    assert (status, body["error"]["code"]) == (409, "promo_unavailable")
    assert [p for p in eligible(second)[1] if p["promo_id"] == shop["promo"]] == []
    # When 61 seconds have passed: the hold has expired by itself, no job ran
    now(NOW + timedelta(seconds=61))
    assert eligible(second)[1][0]["units_left"] == 1
    status, body, _ = reserve(shop["promo"], second)
    assert status == 201
    # Then nothing was written to the first reservation: it reads as released from the clock
    rows = pb.rows(
        db, "SELECT state FROM promo_reservation WHERE id = :i", i=held["reservation_id"]
    )
    assert rows == [{"state": "held"}]
    with SqlAlchemyUnitOfWork() as uow:
        first_hold = uow.promos.reservation(held["reservation_id"])
    assert first_hold.state(now.value()) == ReservationState.RELEASED
    assert first_hold.state(NOW + timedelta(seconds=59)) == ReservationState.HELD
    status, again, _ = reserve(shop["promo"], first)
    assert (status, again["error"]["code"]) == (409, "promo_unavailable")


def test_expired_hold_of_the_same_customer_gives_a_new_reservation(db, shop, now):
    customer = pb.customer(db, *LISBON)
    _, first, _ = reserve(shop["promo"], customer)
    now(NOW + timedelta(seconds=60))
    status, second, _ = reserve(shop["promo"], customer)
    assert status == 201
    assert second["reservation_id"] != first["reservation_id"]


def test_reserve_refuses_segment_and_distance_with_422_saying_which(db, shop):
    wine = pb.customer(db, *LISBON, segments=("wine",))
    far = pb.customer(db, pb.north_of(LISBON[0], 6), LISBON[1])
    status, body, _ = reserve(shop["promo"], wine)
    assert (status, body["error"]["code"], body["error"]["reason"]) == (
        422,
        "not_eligible",
        "segment",
    )
    status, body, _ = reserve(shop["promo"], far)
    assert (status, body["error"]["reason"]) == (422, "distance")
    assert "6.00 km" in body["error"]["message"]
    assert pb.rows(db, "SELECT * FROM promo_reservation WHERE promo_id = :p", p=shop["promo"]) == []


def test_reserve_refuses_a_promo_not_running_with_409(db, now):
    store = pb.store(db, *LISBON)
    later = pb.promo(db, store, NOW + timedelta(minutes=1))
    ended = pb.promo(db, store, NOW - timedelta(hours=1), NOW)
    customer = pb.customer(db, *LISBON)
    for promo in (later, ended):
        status, body, _ = reserve(promo, customer)
        assert (status, body["error"]["code"]) == (409, "promo_not_running")


def test_promo_inserted_by_sql_with_a_start_in_the_past_can_be_reserved_at_once(db, now):
    # Given a promo of three units inserted by plain SQL, started an hour ago
    store = pb.store(db, *LISBON)
    promo = pb.promo(db, store, NOW - timedelta(hours=1), units=3)
    # Then its units exist and three customers get one each, the fourth none
    statuses = [reserve(promo, pb.customer(db, *LISBON))[0] for _ in range(4)]
    assert statuses == [201, 201, 201, 409]


@pytest.mark.parametrize(
    ("store_at", "customer_at", "radius", "inside"),
    [
        # exactly on the radius (along a meridian the haversine is exact)
        ((38.7223, -9.1393), (pb.north_of(38.7223, 5.0), -9.1393), 5.0, True),
        ((38.7223, -9.1393), (pb.north_of(38.7223, 5.001), -9.1393), 5.0, False),
        # across the antimeridian: 179.99 E and 179.99 W are 2.2 km apart at the equator
        ((0.0, 179.99), (0.0, -179.99), 3.0, True),
        ((0.0, -179.99), (0.0, 179.99), 2.0, False),
        ((-16.5, 179.995), (-16.5, -179.995), 2.0, True),
        # near a pole: across it, at opposite longitudes
        ((89.99, 0.0), (89.99, 180.0), 3.0, True),
        ((89.99, 45.0), (89.995, -120.0), 2.0, True),
        ((-89.995, 10.0), (-89.99, -170.0), 1.0, False),
    ],
)
def test_radius_edges(db, now, store_at, customer_at, radius, inside):
    store = pb.store(db, *store_at)
    promo = pb.promo(db, store, NOW - timedelta(minutes=1), radius_km=radius)
    customer = pb.customer(db, *customer_at)
    offered = [p["promo_id"] for p in eligible(customer)[1]]
    assert (promo in offered) is inside
    assert reserve(promo, customer)[0] == (201 if inside else 422)


def test_two_customers_racing_for_the_last_unit_one_wins(db, shop):
    # Given two customers and one unit, started together many times over
    for _ in range(5):
        promo = pb.promo(db, shop["store"], NOW - timedelta(minutes=1))
        customers = [pb.customer(db, *LISBON) for _ in range(2)]
        barrier = threading.Barrier(2)

        def race(customer, promo=promo, barrier=barrier):
            barrier.wait()
            return reserve(promo, customer)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(race, customers))
        # Then exactly one holds it and the other gets a clear 409
        assert sorted(r[0] for r in results) == [201, 409]
        holds = pb.rows(
            db,
            "SELECT count(*) AS n FROM promo_unit WHERE promo_id = :p AND reservation_id"
            " IS NOT NULL",
            p=promo,
        )
        assert holds == [{"n": 1}]


def test_many_customers_against_few_units_never_oversell(db, shop):
    promo = pb.promo(db, shop["store"], NOW - timedelta(minutes=1), units=5)
    customers = [pb.customer(db, *LISBON) for _ in range(30)]
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda c: reserve(promo, c)[0], customers))
    assert statuses.count(201) == 5
    assert statuses.count(409) == 25
    assert pb.rows(
        db,
        "SELECT count(DISTINCT unit_no) AS n FROM promo_reservation WHERE promo_id = :p",
        p=promo,
    ) == [{"n": 5}]


def test_one_customer_racing_itself_gets_one_hold(db, shop):
    promo = pb.promo(db, shop["store"], NOW - timedelta(minutes=1), units=3)
    customer = pb.customer(db, *LISBON)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: reserve(promo, customer), range(6)))
    assert sorted(r[0] for r in results) == [200] * 5 + [201]
    assert len({r[1]["reservation_id"] for r in results}) == 1


@pytest.mark.parametrize(
    ("path_id", "body", "raw", "code"),
    [
        ("abc", {"customer_id": "c"}, None, 400),
        ("0", {"customer_id": "c"}, None, 400),
        ("99999999999", {"customer_id": "c"}, None, 400),
        ("1", None, "", 400),
        ("1", None, "not json", 400),
        ("1", None, "[1]", 400),
        ("1", {}, None, 400),
        ("1", {"customer_id": ""}, None, 400),
        ("1", {"customer_id": 12}, None, 400),
        ("1", {"customer_id": "x" * 37}, None, 400),
        ("1", {"customer_id": "a\x00b"}, None, 400),
    ],
)
def test_reserve_bad_input_is_a_clear_400_and_writes_nothing(db, now, path_id, body, raw, code):
    before = pb.rows(db, "SELECT count(*) AS n FROM promo_reservation")
    kwargs = {"raw_body": raw} if raw is not None else {}
    event = api_event("POST", "/promos/{id}/reservations", {"id": path_id}, body, **kwargs)
    status, answer, _ = invoke(promos_reserve.lambda_handler, event)
    assert status == code
    assert answer["error"]["code"] == "invalid_request"
    assert answer["error"]["message"]
    assert pb.rows(db, "SELECT count(*) AS n FROM promo_reservation") == before


def test_reserve_unknown_promo_or_customer_is_404(db, shop):
    customer = pb.customer(db, *LISBON)
    assert reserve(2_000_000_000, customer)[1]["error"]["code"] == "promo_not_found"
    status, body, _ = reserve(shop["promo"], "nobody-" + pb.unique("x"))
    assert (status, body["error"]["code"]) == (404, "customer_not_found")


@pytest.mark.parametrize(
    "query", [None, {}, {"customer_id": ""}, {"customer_id": "x" * 37}, {"other": "1"}]
)
def test_eligible_bad_input_is_a_clear_400(db, query):
    event = api_event("GET", "/promos/eligible", query=query)
    status, body, _ = invoke(promos_eligible.lambda_handler, event)
    assert status == 400
    assert "customer_id" in body["error"]["message"]


def test_eligible_for_a_customer_without_profile_is_404(db):
    status, body, _ = eligible(pb.unique("ghost"))
    assert (status, body["error"]["code"]) == (404, "customer_not_found")
