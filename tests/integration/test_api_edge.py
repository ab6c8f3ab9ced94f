"""The edge promises of openapi.yaml that do not need a server: API keys, and inputs the
contract fuzzing showed were answered with a 500."""

from __future__ import annotations

import pytest

from common import settings
from handlers import charge, eligible, status, subscribe
from tests import builders
from tests.events import api_event, invoke


@pytest.fixture
def api_keys(monkeypatch):
    """Start the handlers with API_KEY set to the two callers' keys, as the local server can."""
    monkeypatch.setenv("API_KEY", "website-key, billing-key")
    settings.get.cache_clear()
    yield ("website-key", "billing-key")
    monkeypatch.delenv("API_KEY")
    settings.get.cache_clear()


def every_endpoint(sub: str, club: int, headers: dict[str, str]) -> list[tuple]:
    return [
        (
            subscribe.lambda_handler,
            api_event(
                "POST",
                "/club/{id}/subscribe",
                {"id": str(club)},
                body={"customer_id": builders.unique_customer()},
                headers=headers,
            ),
        ),
        (
            status.lambda_handler,
            api_event(
                "POST",
                "/subscription/{id}/status",
                {"id": sub},
                body={"status_id": 1},
                headers=headers,
            ),
        ),
        (eligible.lambda_handler, api_event("GET", "/subscription/eligible", headers=headers)),
        (
            charge.lambda_handler,
            api_event(
                "POST",
                "/subscription/{id}/charge/{request_id}",
                {"id": "no-such-subscription", "request_id": "r-1"},
                headers=headers,
            ),
        ),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no key"),
        pytest.param({"x-api-key": "wrong"}, id="wrong key"),
        pytest.param({"x-api-key": ""}, id="empty key"),
        pytest.param({"x-api-key": "website-key, billing-key"}, id="the whole list"),
        pytest.param({"x-api-key": "website-key\udcff"}, id="undecodable key"),
    ],
)
def test_with_api_key_set_every_endpoint_refuses_a_missing_or_wrong_key_with_403(
    db, now, api_keys, headers
):
    # Given the handlers started with API_KEY and a subscription in an active club
    club = builders.club(db)
    sub = builders.subscription(db, club)
    before = builders.count(db, "subscription_status_history")
    for handler, event in every_endpoint(sub, club, headers):
        # When an endpoint is called without one of the keys
        code, answer, _ = invoke(handler, event)
        # Then 403 in the envelope, and nothing is done
        assert code == 403, (handler.__module__, answer)
        assert answer == {
            "error": {"code": "forbidden", "message": "a valid x-api-key header is required"}
        }
    assert builders.count(db, "subscription") == 1
    assert builders.count(db, "subscription_status_history") == before


@pytest.mark.parametrize("key_header", ["x-api-key", "X-API-Key"])
def test_with_api_key_set_either_callers_key_is_accepted_whatever_the_header_case(
    db, now, api_keys, key_header
):
    # Given the handlers started with the website's and the billing operation's keys
    club = builders.club(db)
    sub = builders.subscription(db, club)
    for key in api_keys:
        for handler, event in every_endpoint(sub, club, {key_header: key}):
            # When an endpoint is called with one of them
            code, answer, _ = invoke(handler, event)
            # Then the request reaches the handler (the charge of an unknown id is a 404)
            assert code in (200, 201, 404), (handler.__module__, answer)
            refused = isinstance(answer, dict) and "error" in answer
            assert not refused or answer["error"]["code"] == "subscription_not_found"


def test_without_api_key_set_no_key_is_needed(db, now):
    # Given the handlers started without API_KEY (make run, the tests, the evaluation stage)
    settings.get.cache_clear()
    club = builders.club(db)
    # When a caller sends no key
    code, _, _ = invoke(
        subscribe.lambda_handler,
        api_event("POST", "/club/{id}/subscribe", {"id": str(club)}, body={"customer_id": "c"}),
    )
    # Then it is served
    assert code == 201


@pytest.mark.parametrize(
    "effect_date",
    ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"],
)
def test_an_effect_date_whose_utc_instant_leaves_the_calendar_is_a_400_not_a_500(
    db, now, effect_date
):
    # Given a subscription
    sub = builders.subscription(db, builders.club(db))
    before = builders.count(db, "subscription_status_history")
    # When the status changes at a date that is valid text but past year 9999 in UTC
    code, answer, _ = invoke(
        status.lambda_handler,
        api_event(
            "POST",
            "/subscription/{id}/status",
            {"id": sub},
            body={"status_id": 2, "effect_date": effect_date},
        ),
    )
    # Then 400 naming the field, and nothing written
    assert code == 400
    assert answer["error"]["code"] == "invalid_request"
    assert answer["error"]["message"].startswith("effect_date:")
    assert builders.count(db, "subscription_status_history") == before


@pytest.mark.parametrize("limit", ["5.0", " 5", "+5", "5_0", "0x5"])
def test_eligible_limit_must_be_plain_digits_as_the_document_says(db, now, limit):
    # Given the eligible endpoint, whose limit openapi.yaml declares an integer
    # When the limit is text that is not an integer written in digits
    code, answer, _ = invoke(
        eligible.lambda_handler,
        api_event("GET", "/subscription/eligible", query={"limit": limit}),
    )
    # Then 400, where pydantic's lax parsing used to read it as 5 or 50
    assert code == 400
    assert answer["error"]["message"].startswith("limit:")
