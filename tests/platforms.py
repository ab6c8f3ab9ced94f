"""The fake e-commerce platform, started for one test and configured as our platform."""

from __future__ import annotations

import contextlib
import io

from common import settings
from fake_ecommerce import server as fake
from handlers import charge as charge_handler

SECRET = "test-secret-never-logged"
KEY = "https://example.test/beer-club.git"


def configure(monkeypatch, base_url: str, timeout: float = 1.0) -> None:
    monkeypatch.setenv("ECOMM_BASE_URL", base_url)
    monkeypatch.setenv("ECOMM_API_KEY", KEY)
    monkeypatch.setenv("ECOMM_API_SECRET", SECRET)
    monkeypatch.setenv("ECOMM_TIMEOUT_SECONDS", str(timeout))
    settings.get.cache_clear()
    charge_handler.platform.cache_clear()


@contextlib.contextmanager
def running(monkeypatch, **options):
    with fake.start(api_key=KEY, api_secret=SECRET, log_stream=io.StringIO(), **options) as it:
        configure(monkeypatch, it.base_url)
        yield it
    settings.get.cache_clear()
    charge_handler.platform.cache_clear()
