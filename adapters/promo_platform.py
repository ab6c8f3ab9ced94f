"""The e-commerce client the promo completion uses: one per warm container."""

from __future__ import annotations

from functools import lru_cache

from adapters import secrets
from adapters.ecommerce_client import HttpEcommerce
from common import settings


@lru_cache(maxsize=1)
def platform() -> HttpEcommerce:
    config = settings.get()
    return HttpEcommerce(
        config.ecomm_base_url,
        config.ecomm_api_key,
        lambda: secrets.ecomm_api_secret(config),
        config.ecomm_timeout_seconds,
    )
