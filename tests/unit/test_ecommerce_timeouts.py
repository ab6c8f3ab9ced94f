"""The platform call has a connect timeout and a read timeout, both from settings."""

from __future__ import annotations

import pytest
import requests

from adapters.ecommerce_client import HttpEcommerce
from common import settings
from domain.errors import PlatformTimeout
from handlers import charge


class RecordingSession:
    def __init__(self, raises: type[Exception]) -> None:
        self.raises = raises
        self.timeouts: list[object] = []

    def post(self, url, **kwargs):
        self.timeouts.append(kwargs["timeout"])
        raise self.raises("boom")


@pytest.fixture
def configured(monkeypatch):
    monkeypatch.setenv("ECOMM_CONNECT_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("ECOMM_TIMEOUT_SECONDS", "8")
    monkeypatch.setenv("ECOMM_API_SECRET", "s")
    settings.get.cache_clear()
    charge.platform.cache_clear()
    yield charge.platform()
    settings.get.cache_clear()
    charge.platform.cache_clear()


def test_the_handlers_client_gets_a_connect_and_a_read_timeout_from_settings(configured):
    # Given ECOMM_CONNECT_TIMEOUT_SECONDS=2.5 and ECOMM_TIMEOUT_SECONDS=8
    session = RecordingSession(requests.ConnectTimeout)
    configured.session = session
    # When a connection is not accepted in time
    with pytest.raises(PlatformTimeout) as refused:
        configured.place_order("r1", "c1", 5)
    # Then requests got the (connect, read) pair, and nothing can have been sent
    assert session.timeouts == [(2.5, 8.0)]
    assert refused.value.sent is False
    assert "within 2.5s" in str(refused.value)


def test_a_read_timeout_names_the_read_limit_and_may_have_reached_the_platform():
    # Given a client with separate limits whose platform accepts but does not answer
    session = RecordingSession(requests.ReadTimeout)
    client = HttpEcommerce("https://p.test", "k", lambda: "s", 10.0, session, 3.05)
    # When an order is placed
    with pytest.raises(PlatformTimeout) as slow:
        client.place_order("r1", "c1", 5)
    # Then the read limit is the one reported, and the order may exist
    assert session.timeouts == [(3.05, 10.0)]
    assert slow.value.sent is True
    assert "within 10s" in str(slow.value)
