"""POST /subscription/update/{id}: the challenge's starting repository's status route."""

from __future__ import annotations

from datetime import datetime, timedelta

from handlers import status as status_handler
from tests import builders
from tests.events import api_event, invoke

LEGACY = "/subscription/update/{id}"
CURRENT = "/subscription/{id}/status"


def post(resource, sub_id, body):
    return invoke(status_handler.lambda_handler, api_event("POST", resource, {"id": sub_id}, body))


def test_the_starting_repositorys_body_pauses_with_its_automatic_return(db, now):
    # Given an active subscription
    sub = builders.subscription(db, builders.club(db))
    # When the starting repository's body is posted to its route
    status, body, headers = post(
        LEGACY,
        sub,
        {
            "subscription_id": sub,
            "status_id": 3,
            "effect_date": "2026-11-21T12:25:56.563000",
            "interval": 30,
        },
    )
    # Then it did what the status endpoint does: the pause and the automatic return
    assert status == 200, body
    assert [(r["status_id"], r["effect_date"]) for r in body] == [
        (3, "2026-11-21T12:25:56.563000"),
        (1, "2026-12-21T12:25:56.563000"),
    ]
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert builders.history(db, sub)[-2:] == [
        (3, datetime(2026, 11, 21, 12, 25, 56, 563000), None),
        (1, datetime(2026, 11, 21, 12, 25, 56, 563000) + timedelta(days=30), body[1]["details"]),
    ]


def test_both_routes_answer_the_same_for_the_same_change(db, now):
    # Given two identical subscriptions
    club = builders.club(db)
    first, second = builders.subscription(db, club), builders.subscription(db, club)
    change = {"status_id": 2, "effect_date": "2026-11-21T12:00:00.000001", "details": "bye"}
    # When one is cancelled through each route
    old_status, old_body, _ = post(LEGACY, first, change)
    new_status, new_body, _ = post(CURRENT, second, change)

    # Then the answers differ only by the row and subscription ids
    def shape(rows):
        return [{k: v for k, v in r.items() if k not in ("id", "subscription_id")} for r in rows]

    assert (old_status, shape(old_body)) == (new_status, shape(new_body)) == (200, shape(new_body))


def test_a_body_naming_another_subscription_is_a_400_and_writes_nothing(db, now):
    # Given two subscriptions
    club = builders.club(db)
    sub, other = builders.subscription(db, club), builders.subscription(db, club)
    before = builders.count(db, "subscription_status_history")
    # When the body names the other one
    status, body, _ = post(LEGACY, sub, {"subscription_id": other, "status_id": 2})
    # Then 400 in the envelope, and no row for either
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert "subscription_id" in body["error"]["message"]
    assert builders.count(db, "subscription_status_history") == before


def test_a_numeric_subscription_id_in_the_body_matches_the_same_digits_in_the_path(db, now):
    sub = builders.subscription(db, builders.club(db), sub_id="4242")
    status, body, _ = post(LEGACY, sub, {"subscription_id": 4242, "status_id": 2})
    assert status == 200, body


def test_the_legacy_route_refuses_what_the_status_endpoint_refuses(db, now):
    sub = builders.subscription(db, builders.club(db))
    # An unknown status, a bad date, a missing subscription, a body id of the wrong type
    assert post(LEGACY, sub, {"status_id": 9})[0] == 400
    assert post(LEGACY, sub, {"status_id": 2, "effect_date": "18/02/2019"})[0] == 400
    assert post(LEGACY, "nobody", {"subscription_id": "nobody", "status_id": 2})[0] == 404
    assert post(LEGACY, sub, {"subscription_id": True, "status_id": 2})[0] == 400


def test_subscription_id_in_the_body_of_the_status_endpoint_is_ignored_as_before(db, now):
    # The current route ignores unknown properties, including this one
    sub = builders.subscription(db, builders.club(db))
    status, _, _ = post(CURRENT, sub, {"subscription_id": "someone-else", "status_id": 2})
    assert status == 200
