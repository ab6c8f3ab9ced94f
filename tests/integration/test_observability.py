"""What an on-call engineer reads: JSON log lines correlated by the API Gateway request id,
one business metric per endpoint in CloudWatch EMF, and nothing secret or personal at INFO."""

from __future__ import annotations

import io
import json

import pytest

from common import settings
from common.observability import logger
from fake_ecommerce import server as fake
from handlers import charge, eligible, status, subscribe
from tests import builders
from tests.events import api_event, invoke

SECRET = "observability-secret-never-logged"
PLATFORM_KEY = "https://example.test/beer-club.git"
CALLER_KEY = "caller-key-never-logged"


@pytest.fixture
def observed(capsys):
    """The log lines (JSON) and the EMF metric blobs the handlers write while the test runs."""
    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)
    capsys.readouterr()

    def read() -> tuple[list[dict], list[dict]]:
        lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
        printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        blobs = [json.loads(line) for line in printed if line.startswith("{")]
        return lines, [blob for blob in blobs if "_aws" in blob]

    yield read
    handler.setStream(previous)


@pytest.fixture
def platform(monkeypatch, database_url):
    with fake.start(api_key=PLATFORM_KEY, api_secret=SECRET, log_stream=io.StringIO()) as running:
        monkeypatch.setenv("ECOMM_BASE_URL", running.base_url)
        monkeypatch.setenv("ECOMM_API_KEY", PLATFORM_KEY)
        monkeypatch.setenv("ECOMM_API_SECRET", SECRET)
        monkeypatch.setenv("ECOMM_TIMEOUT_SECONDS", "1")
        monkeypatch.setenv("API_KEY", CALLER_KEY)
        settings.get.cache_clear()
        charge.platform.cache_clear()
        yield running
    settings.get.cache_clear()
    charge.platform.cache_clear()


def metric(blobs: list[dict], name: str) -> list[float]:
    """The values of one metric across the EMF blobs, checking each is declared in BeerClub."""
    values = []
    for blob in blobs:
        declared = [
            m["Name"]
            for directive in blob["_aws"]["CloudWatchMetrics"]
            for m in directive["Metrics"]
            if directive["Namespace"] == "BeerClub"
        ]
        if name in declared:
            assert blob["service"] == "beer-club-subscriptions"
            value = blob[name]
            values.extend(value if isinstance(value, list) else [value])
    return values


def one(lines: list[dict], message: str) -> dict:
    found = [line for line in lines if line["message"] == message]
    assert len(found) == 1, [line["message"] for line in lines]
    return found[0]


def call(handler, event, key=CALLER_KEY):
    event["headers"]["x-api-key"] = key
    return invoke(handler, event)


def test_subscribe_logs_correlated_ids_and_counts_subscription_created(db, now, observed):
    # Given an active club and a customer
    club = builders.club(db)
    customer = builders.unique_customer()
    event = api_event("POST", "/club/{id}/subscribe", {"id": str(club)}, {"customer_id": customer})
    # When the customer subscribes
    code, body, _ = invoke(subscribe.lambda_handler, event)
    assert code == 201
    # Then one INFO line says so, correlated by API Gateway's request id, with the ids as keys
    lines, blobs = observed()
    line = one(lines, "subscription created")
    assert line["level"] == "INFO"
    assert line["correlation_id"] == event["requestContext"]["requestId"]
    assert line["subscription_id"] == body["id"]
    assert line["club_id"] == club
    assert line["service"] == "beer-club-subscriptions"
    # And SubscriptionCreated is counted once, and the customer id is in no log line
    assert metric(blobs, "SubscriptionCreated") == [1.0]
    assert customer not in json.dumps(lines)


def test_a_refused_subscription_is_logged_with_its_club_but_not_its_customer(db, now, observed):
    # Given a closed club
    club = builders.club(db, status_id=2)
    customer = builders.unique_customer()
    event = api_event("POST", "/club/{id}/subscribe", {"id": str(club)}, {"customer_id": customer})
    # When a customer tries to subscribe
    code, _, _ = invoke(subscribe.lambda_handler, event)
    # Then the refusal is logged with the club and the request id, without the customer
    assert code == 409
    lines, blobs = observed()
    line = one(lines, "request refused")
    assert (line["code"], line["club_id"], line["status"]) == ("club_not_open", club, 409)
    assert line["correlation_id"] == event["requestContext"]["requestId"]
    assert customer not in json.dumps(lines)
    assert metric(blobs, "SubscriptionCreated") == []


def test_status_change_logs_the_subscription_and_counts_status_changed(db, now, observed):
    # Given a subscription
    sub = builders.subscription(db, builders.club(db))
    event = api_event(
        "POST", "/subscription/{id}/status", {"id": sub}, {"status_id": 3, "interval": 10}
    )
    # When it is paused
    code, _, _ = invoke(status.lambda_handler, event)
    assert code == 200
    # Then one line with the subscription id and the rows written, and one StatusChanged
    lines, blobs = observed()
    line = one(lines, "status changed")
    assert (line["subscription_id"], line["status"], line["rows_written"]) == (sub, "PAUSED", 2)
    assert line["correlation_id"] == event["requestContext"]["requestId"]
    assert metric(blobs, "StatusChanged") == [1.0]


def test_a_status_change_of_an_unknown_subscription_is_logged_with_its_id(db, now, observed):
    # Given no such subscription
    event = api_event("POST", "/subscription/{id}/status", {"id": "nope"}, {"status_id": 2})
    # When its status is changed
    code, _, _ = invoke(status.lambda_handler, event)
    # Then the 404 is logged with the id asked for, and nothing is counted
    assert code == 404
    lines, blobs = observed()
    line = one(lines, "request refused")
    assert (line["subscription_id"], line["code"]) == ("nope", "subscription_not_found")
    assert metric(blobs, "StatusChanged") == []


def test_eligible_counts_the_ids_it_listed(db, now, observed):
    # Given three subscriptions of an active club
    club = builders.club(db)
    for _ in range(3):
        builders.subscription(db, club)
    event = api_event("GET", "/subscription/eligible")
    # When the billing operation lists them
    code, body, _ = invoke(eligible.lambda_handler, event)
    assert code == 200
    # Then EligibleListed carries the count, and the line says how many
    lines, blobs = observed()
    assert one(lines, "eligible listed")["count"] == 3 == len(body)
    assert metric(blobs, "EligibleListed") == [3.0]


def test_charges_count_placed_replayed_and_failed_without_logging_secrets_or_customers(
    db, now, observed, platform
):
    # Given two members of an active club, the caller's key and the platform's secret set
    club = builders.club(db, sku=4242)
    customers = [builders.unique_customer(), builders.unique_customer()]
    first, second = (builders.subscription(db, club, customer=c) for c in customers)

    def charge_of(sub: str, request_id: str):
        event = api_event(
            "POST",
            "/subscription/{id}/charge/{request_id}",
            {"id": sub, "request_id": request_id},
        )
        return event, call(charge.lambda_handler, event)

    # When the first is charged, then charged again, the platform declines the second,
    # and then fails on it
    placed_event, (placed, _, _) = charge_of(first, "req-1")
    _, (replayed, _, _) = charge_of(first, "req-2")
    platform.set_mode("reject")
    _, (declined, _, _) = charge_of(second, "req-3")
    platform.set_mode("fail")
    _, (failed, _, _) = charge_of(second, "req-4")
    assert (placed, replayed, declined, failed) == (201, 200, 422, 502)
    # Then each outcome has its line, keyed by subscription and request id, and its metric
    lines, blobs = observed()
    line = one(lines, "charge placed")
    assert (line["subscription_id"], line["request_id"]) == (first, "req-1")
    assert line["correlation_id"] == placed_event["requestContext"]["requestId"]
    assert one(lines, "charge replayed")["subscription_id"] == first
    assert one(lines, "charge refused by the platform")["platform_status"] == 422
    assert one(lines, "charge failed at the platform")["level"] == "WARNING"
    assert metric(blobs, "ChargePlaced") == [1.0]
    assert metric(blobs, "ChargeReplayed") == [1.0]
    assert metric(blobs, "ChargeFailed") == [1.0, 1.0]
    # And no line holds the platform's secret, the caller's key or a customer id
    written = json.dumps(lines)
    for private in (SECRET, CALLER_KEY, *customers):
        assert private not in written


def test_a_refused_api_key_is_logged_without_the_key(db, now, observed, monkeypatch):
    # Given the handlers started with API_KEY
    monkeypatch.setenv("API_KEY", CALLER_KEY)
    settings.get.cache_clear()
    event = api_event("GET", "/subscription/eligible", headers={"x-api-key": "guessed-key"})
    # When a caller sends a wrong key
    code, _, _ = invoke(eligible.lambda_handler, event)
    settings.get.cache_clear()
    # Then the refusal is logged with the request id, and neither key is written
    assert code == 403
    lines, _ = observed()
    line = one(lines, "request rejected")
    assert (line["status"], line["correlation_id"]) == (403, event["requestContext"]["requestId"])
    assert "guessed-key" not in json.dumps(lines)
    assert CALLER_KEY not in json.dumps(lines)
