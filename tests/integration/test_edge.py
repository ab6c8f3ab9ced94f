"""The edge when the database itself is down: a clear 503, never a stack trace."""

from __future__ import annotations

import pytest

from common import settings
from handlers import eligible, subscribe
from repositories import database
from tests.events import api_event, invoke


@pytest.fixture
def database_down(monkeypatch, database_url):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    settings.get.cache_clear()
    database.reset()
    yield
    monkeypatch.undo()
    settings.get.cache_clear()
    database.reset()


def test_an_unreachable_database_is_a_503_in_the_envelope(database_down, logs):
    # Given a database that refuses connections
    # When the website subscribes and the billing operation lists
    code, body, _ = invoke(
        subscribe.lambda_handler,
        api_event("POST", "/club/{id}/subscribe", {"id": "1"}, body={"customer_id": "c"}),
    )
    listed = invoke(eligible.lambda_handler, api_event("GET", "/subscription/eligible"))
    # Then both answer 503 with a retry hint and no internals
    assert code == 503
    assert body == {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unavailable, retry later",
        }
    }
    assert listed[0] == 503
    # And the failure is logged with the request id for the on-call engineer
    failures = [line for line in logs() if line["message"] == "database unavailable"]
    assert len(failures) == 2
    assert all(line["level"] == "ERROR" and line["correlation_id"] for line in failures)
