"""No input, however malformed, yields a 500 or writes anything."""

from __future__ import annotations

import pytest

from handlers import eligible, status, subscribe
from tests import builders
from tests.events import api_event, invoke

INJECTION = "'; DROP TABLE subscription; --"
TABLES = ("subscription", "subscription_status_history", "subscription_claim", "club")


def snapshot(db):
    return {table: builders.count(db, table) for table in TABLES}


@pytest.fixture
def world(db, now):
    club = builders.club(db)
    sub = builders.subscription(db, club)
    return {"club": club, "sub": sub, "before": snapshot(db)}


SUBSCRIBE_BODIES = [
    pytest.param({}, id="missing customer_id"),
    pytest.param({"customer_id": ""}, id="empty customer_id"),
    pytest.param({"customer_id": "   "}, id="blank customer_id"),
    pytest.param({"customer_id": "x" * 37}, id="37-character customer_id"),
    pytest.param({"customer_id": 12345}, id="number customer_id"),
    pytest.param({"customer_id": None}, id="null customer_id"),
    pytest.param({"customer_id": ["a"]}, id="list customer_id"),
    pytest.param({"customer_id": {"$ne": 1}}, id="object customer_id"),
    pytest.param({"customer_id": "a\x00b"}, id="NUL in customer_id"),
    pytest.param([{"customer_id": "a"}], id="array body"),
    pytest.param("customer", id="string body"),
]


@pytest.mark.parametrize("body", SUBSCRIBE_BODIES)
def test_subscribe_rejects_bad_bodies_with_400_and_writes_nothing(db, world, body):
    # Given an active club
    # When the body is wrong
    code, answer, _ = invoke(
        subscribe.lambda_handler,
        api_event("POST", "/club/{id}/subscribe", {"id": str(world["club"])}, body=body),
    )
    # Then 400 in the envelope, nothing written
    assert code == 400
    assert answer["error"]["code"] == "invalid_request"
    assert answer["error"]["message"]
    assert snapshot(db) == world["before"]


RAW_BODIES = [
    pytest.param("{not json", id="malformed JSON"),
    pytest.param("", id="empty body"),
    pytest.param(None, id="no body"),
    pytest.param('{"customer_id": "a"', id="truncated JSON"),
    pytest.param("\udcff", id="lone surrogate"),
]


@pytest.mark.parametrize("raw", RAW_BODIES)
def test_subscribe_rejects_unparseable_bodies_with_400(db, world, raw):
    # Given an active club
    # When the body cannot be parsed
    event = api_event("POST", "/club/{id}/subscribe", {"id": str(world["club"])}, raw_body=raw)
    code, answer, _ = invoke(subscribe.lambda_handler, event)
    # Then 400 with a message
    assert code == 400
    assert answer["error"]["message"]
    assert snapshot(db) == world["before"]


def test_a_body_that_is_not_valid_base64_is_a_400(db, world):
    # Given an event flagged base64 whose body is not base64
    event = api_event("POST", "/club/{id}/subscribe", {"id": str(world["club"])}, raw_body="%%%")
    event["isBase64Encoded"] = True
    # When it is handled
    code, answer, _ = invoke(subscribe.lambda_handler, event)
    # Then 400 says so
    assert code == 400
    assert "base64" in answer["error"]["message"]


@pytest.mark.parametrize("base64_body", [False, True])
def test_a_two_megabyte_body_is_refused_with_413(db, world, base64_body):
    # Given a 2 MB body
    raw = '{"customer_id": "' + "x" * (2 * 1024 * 1024) + '"}'
    event = api_event(
        "POST",
        "/club/{id}/subscribe",
        {"id": str(world["club"])},
        raw_body=raw,
        base64_body=base64_body,
    )
    # When it is handled
    code, answer, _ = invoke(subscribe.lambda_handler, event)
    # Then 413, nothing written, and the message does not echo the body
    assert code == 413
    assert answer["error"]["code"] == "payload_too_large"
    assert len(answer["error"]["message"]) < 200
    assert snapshot(db) == world["before"]


@pytest.mark.parametrize(
    "club_id",
    ["abc", "1.5", "", "99999999999999999999", "2147483648", "1e3", " 1", INJECTION, "x" * 5000],
)
def test_subscribe_rejects_non_integer_or_huge_club_ids_with_400(db, world, club_id):
    # Given a club id that is not an integer PostgreSQL can hold
    event = api_event("POST", "/club/{id}/subscribe", {"id": club_id}, body={"customer_id": "c"})
    # When a customer subscribes
    code, answer, _ = invoke(subscribe.lambda_handler, event)
    # Then 400
    assert code == 400
    assert "club id" in answer["error"]["message"]
    assert snapshot(db) == world["before"]


def test_a_missing_path_parameter_is_a_400(db, world):
    # Given an event without path parameters
    event = api_event("POST", "/club/{id}/subscribe", None, body={"customer_id": "c"})
    # When handled
    # Then 400
    assert invoke(subscribe.lambda_handler, event)[0] == 400


def test_injection_strings_in_customer_ids_are_stored_as_plain_text(db, world):
    # Given an injection string as a customer id (it is a valid opaque id)
    body = {"customer_id": INJECTION[:36]}
    # When it subscribes
    code, answer, _ = invoke(
        subscribe.lambda_handler,
        api_event("POST", "/club/{id}/subscribe", {"id": str(world["club"])}, body=body),
    )
    # Then it is stored verbatim, and the tables are all still there
    assert code == 201
    assert answer["customer_id"] == INJECTION[:36]
    assert builders.count(db, "subscription") == 2


STATUS_BODIES = [
    pytest.param({}, id="missing status_id"),
    pytest.param({"status_id": 0}, id="status 0"),
    pytest.param({"status_id": 4}, id="status 4"),
    pytest.param({"status_id": -1}, id="negative status"),
    pytest.param({"status_id": "1"}, id="string status"),
    pytest.param({"status_id": 1.0}, id="float status"),
    pytest.param({"status_id": True}, id="boolean status"),
    pytest.param({"status_id": 2**70}, id="huge status"),
    pytest.param({"status_id": 1, "effect_date": "yesterday"}, id="unparseable date"),
    pytest.param({"status_id": 1, "effect_date": "2019-02-30T00:00:00"}, id="impossible date"),
    pytest.param({"status_id": 1, "effect_date": 1550492756}, id="numeric date"),
    pytest.param({"status_id": 3, "interval": -5}, id="negative interval"),
    pytest.param({"status_id": 3, "interval": 0}, id="zero interval"),
    pytest.param({"status_id": 3, "interval": 2.5}, id="fractional interval"),
    pytest.param({"status_id": 3, "interval": "30"}, id="string interval"),
    pytest.param({"status_id": 3, "interval": 10**9}, id="huge interval"),
    pytest.param(
        {"status_id": 3, "interval": 30, "effect_date": "9999-12-31T00:00:00"},
        id="return date past year 9999",
    ),
    pytest.param({"status_id": 2, "details": "x" * 257}, id="257-character details"),
    pytest.param({"status_id": 2, "details": 5}, id="numeric details"),
    pytest.param({"status_id": 2, "details": "a\x00"}, id="NUL in details"),
]


@pytest.mark.parametrize("body", STATUS_BODIES)
def test_status_rejects_bad_bodies_with_400_and_writes_nothing(db, world, body):
    # Given a subscription
    # When a status change body is wrong
    code, answer, _ = invoke(
        status.lambda_handler,
        api_event("POST", "/subscription/{id}/status", {"id": world["sub"]}, body=body),
    )
    # Then 400, nothing written
    assert code == 400, answer
    assert answer["error"]["code"] == "invalid_request"
    assert snapshot(db) == world["before"]


@pytest.mark.parametrize(
    ("sub_id", "expected"),
    [("x" * 5000, 400), ("x" * 37, 400), ("a\x00b", 400), (INJECTION, 404), ("%27%3B", 404)],
)
def test_status_path_ids_are_opaque_but_bounded(db, world, sub_id, expected):
    # Given an odd subscription id in the path
    event = api_event("POST", "/subscription/{id}/status", {"id": sub_id}, body={"status_id": 2})
    # When its status changes
    code, _, _ = invoke(status.lambda_handler, event)
    # Then it is a 400 when no id could be that long or odd, else simply not found
    assert code == expected
    assert snapshot(db) == world["before"]


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "abc"},
        {"limit": "100001"},
        {"limit": "1.5"},
        {"limit": "9" * 30},
        {"after": "x" * 37},
        {"after": ""},
    ],
)
def test_eligible_rejects_bad_pagination_with_400(db, world, query):
    # Given a bad limit or after
    # When eligible is asked
    code, answer, _ = invoke(eligible.lambda_handler, api_event("GET", "/x", query=query))
    # Then 400
    assert code == 400
    assert answer["error"]["code"] == "invalid_request"


def test_an_event_that_is_not_a_dict_is_a_400():
    # Given garbage instead of an API Gateway event
    # When a handler receives it
    from tests.events import LambdaContext

    response = subscribe.lambda_handler("garbage", LambdaContext())
    # Then a 400 envelope
    assert response["statusCode"] == 400
