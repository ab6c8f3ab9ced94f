"""POST /club/{id}/subscribe/ against the migrated database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from sqlalchemy import text

from handlers import subscribe
from tests import builders
from tests.events import api_event, invoke

RESOURCE = "/club/{id}/subscribe"


def post(club_id, body=None, **kwargs):
    event = api_event("POST", RESOURCE, {"id": str(club_id)}, body=body, **kwargs)
    return invoke(subscribe.lambda_handler, event)


def test_subscribing_to_an_active_club_creates_the_subscription_and_its_active_row(db, now):
    # Given an active club
    club = builders.club(db, status_id=1)
    customer = builders.unique_customer()
    # When the customer subscribes
    status, body, _ = post(club, {"customer_id": customer})
    # Then a 201 describes the new subscription, and it is stored with an ACTIVE row from now
    assert status == 201
    assert body["club_id"] == club
    assert body["customer_id"] == customer
    assert body["status"] == "ACTIVE"
    assert body["create_date"] == now.value().isoformat()
    assert builders.count(db, "subscription", "id = :i", i=body["id"]) == 1
    assert builders.history(db, body["id"]) == [(1, now.value(), "Subscription created")]


@pytest.mark.parametrize(
    ("club_status", "word"), [(2, "CLOSED"), (3, "INACTIVE"), (None, "no current status")]
)
def test_a_club_that_is_not_active_refuses_new_subscriptions(db, now, club_status, word):
    # Given a closed, inactive or status-less club
    club = builders.club(db, status_id=club_status)
    # When a customer subscribes
    status, body, _ = post(club, {"customer_id": builders.unique_customer()})
    # Then 409 says why, and nothing is written
    assert status == 409
    assert body["error"]["code"] == "club_not_open"
    assert word in body["error"]["message"]
    assert builders.count(db, "subscription") == 0


def test_a_club_whose_activation_is_only_scheduled_is_not_open_yet(db, now):
    # Given a club whose only status row takes effect tomorrow
    club = builders.club(db, status_id=None)
    builders.club_status(db, club, 1, datetime(2026, 11, 22))
    # When a customer subscribes today
    status, _, _ = post(club, {"customer_id": builders.unique_customer()})
    # Then it is refused; tomorrow it is accepted
    assert status == 409
    now(datetime(2026, 11, 22, 0, 0, 1))
    assert post(club, {"customer_id": builders.unique_customer()})[0] == 201


def test_a_club_closed_by_a_later_row_refuses_and_a_reopened_one_accepts(db, now):
    # Given a club opened, then closed, then reopened (ties broken by create_date)
    club = builders.club(db, status_id=1, effect_date=datetime(2020, 1, 1))
    builders.club_status(db, club, 2, datetime(2021, 1, 1), create_date=datetime(2021, 1, 1))
    # When a customer subscribes while it is closed
    assert post(club, {"customer_id": builders.unique_customer()})[0] == 409
    # Then after a reopening row with the same effect_date but a later create_date, it accepts
    builders.club_status(db, club, 1, datetime(2021, 1, 1), create_date=datetime(2021, 1, 2))
    assert post(club, {"customer_id": builders.unique_customer()})[0] == 201


def test_an_unknown_club_answers_404(db, now):
    # Given no club 999
    # When a customer subscribes to it
    status, body, _ = post(999, {"customer_id": "c1"})
    # Then 404
    assert status == 404
    assert body["error"]["code"] == "club_not_found"


def test_a_second_subscription_of_the_same_customer_answers_409_naming_the_first(db, now):
    # Given a customer subscribed to a club
    club = builders.club(db)
    customer = builders.unique_customer()
    first = post(club, {"customer_id": customer})[1]["id"]
    # When they subscribe again, even after cancelling
    builders.subscription_status(db, first, 2, datetime(2026, 11, 21, 11))
    status, body, _ = post(club, {"customer_id": customer})
    # Then 409 names the existing subscription and no second row exists
    assert status == 409
    assert body["error"]["code"] == "already_subscribed"
    assert body["error"]["subscription_id"] == first
    assert first in body["error"]["message"]
    assert builders.count(db, "subscription") == 1


def test_a_subscription_inserted_by_sql_also_blocks_a_second_one(db, now):
    # Given a subscription written by an operator with plain SQL (no reservation row)
    club = builders.club(db)
    existing = builders.subscription(db, club, customer="00000000-0000-0000-000-0000000000000")
    # When the same customer subscribes through the API
    status, body, _ = post(club, {"customer_id": "00000000-0000-0000-000-0000000000000"})
    # Then 409 names the operator's row, and the reservation was rolled back
    assert status == 409
    assert body["error"]["subscription_id"] == existing
    assert builders.count(db, "subscription_claim") == 0


def test_duplicate_rows_inserted_by_sql_still_load_and_block(db, now):
    # Given two rows for the same customer and club, inserted by SQL
    club = builders.club(db)
    builders.subscription(db, club, customer="dup", sub_id="a-first")
    builders.subscription(db, club, customer="dup", sub_id="b-second")
    # When that customer subscribes
    status, body, _ = post(club, {"customer_id": "dup"})
    # Then 409 names one of them
    assert status == 409
    assert body["error"]["subscription_id"] in {"a-first", "b-second"}


def test_a_deleted_subscription_frees_the_customer_to_subscribe_again(db, now):
    # Given a subscription an operator deleted with plain SQL (history first)
    club = builders.club(db)
    customer = builders.unique_customer()
    first = post(club, {"customer_id": customer})[1]["id"]
    with db.begin() as conn:
        conn.execute(
            text("DELETE FROM subscription_status_history WHERE subscription_id = :i"), {"i": first}
        )
        conn.execute(text("DELETE FROM subscription WHERE id = :i"), {"i": first})
    # When the customer subscribes again
    status, body, _ = post(club, {"customer_id": customer})
    # Then it is a new subscription
    assert status == 201
    assert body["id"] != first


def test_a_subscription_moved_by_sql_to_another_customer_releases_the_old_one(db, now):
    # Given a subscription whose customer an operator changed with SQL
    club = builders.club(db)
    first = post(club, {"customer_id": "old-customer"})[1]["id"]
    with db.begin() as conn:
        conn.execute(
            text("UPDATE subscription SET customer_store_id = 'new' WHERE id = :i"), {"i": first}
        )
    # When the old customer subscribes again
    status, _, _ = post(club, {"customer_id": "old-customer"})
    # Then it succeeds, and the moved subscription now blocks the new customer
    assert status == 201
    assert post(club, {"customer_id": "new"})[1]["error"]["subscription_id"] == first


def test_sixteen_parallel_identical_requests_create_exactly_one_subscription(db, now):
    # Given an active club and sixteen identical requests released together
    club = builders.club(db)
    customer = builders.unique_customer()
    barrier = threading.Barrier(16)

    def attempt(_):
        barrier.wait()
        return post(club, {"customer_id": customer})

    # When they run in parallel
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(16)))
    # Then one 201, fifteen 409 naming it, and exactly one row
    statuses = sorted(r[0] for r in results)
    assert statuses == [201] + [409] * 15
    created = next(r[1]["id"] for r in results if r[0] == 201)
    assert {r[1]["error"]["subscription_id"] for r in results if r[0] == 409} == {created}
    assert builders.count(db, "subscription", "customer_store_id = :c", c=customer) == 1
    assert builders.count(db, "subscription_status_history", "subscription_id = :s", s=created) == 1


def test_the_body_may_arrive_base64_encoded_and_the_path_may_end_with_a_slash(db, now):
    # Given an active club
    club = builders.club(db)
    # When the body is base64-encoded by API Gateway on a path with a trailing slash
    event = api_event(
        "POST",
        "/club/{id}/subscribe/",
        {"id": str(club)},
        body={"customer_id": "b64"},
        base64_body=True,
    )
    status, body, _ = invoke(subscribe.lambda_handler, event)
    # Then it is decoded as usual
    assert status == 201
    assert body["customer_id"] == "b64"
