"""The e-commerce platform over HTTP: POST {ECOMM_BASE_URL}/order/{request_id}."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from urllib.parse import quote

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from domain.errors import PlatformTimeout, PlatformUnreachable
from domain.ports import PlatformAnswer

MAX_RECORDED_BODY = 64 * 1024


def new_session() -> requests.Session:
    session = requests.Session()
    # No automatic retries: a POST is retried only by the ledger's rules, with the same id.
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection itself failed, so the platform cannot have seen the order."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, NewConnectionError) or isinstance(exc, requests.exceptions.SSLError)


class HttpEcommerce:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        secret: Callable[[], str],
        timeout_seconds: float,
        session: requests.Session | None = None,
        connect_timeout_seconds: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._secret = secret
        # Separate limits: a platform that does not accept the connection is given up on
        # quickly (nothing was sent), one that is working on the order gets the read time.
        self.read_timeout = timeout_seconds
        self.connect_timeout = connect_timeout_seconds or timeout_seconds
        self.timeout = (self.connect_timeout, self.read_timeout)
        self.session = session or new_session()

    def place_order(
        self, request_id: str, customer_id: str, sku_id: int, unit_price: Decimal | None = None
    ) -> PlatformAnswer:
        url = f"{self.base_url}/order/{quote(request_id, safe='')}"
        headers = {
            "x-api-key": self.api_key,
            "x-api-secret": self._secret(),
            "Content-Type": "application/json",
        }
        order: dict[str, object] = {"customer_id": customer_id, "sku_id": sku_id}
        if unit_price is not None:
            # Flash promos: the promo's price, as a decimal string (an assumption about the
            # real platform, see docs/promos.md); charges send none.
            order["unit_price"] = str(unit_price)
        payload = orjson.dumps(order)
        try:
            response = self.session.post(
                url, data=payload, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.ConnectTimeout:
            raise PlatformTimeout(
                "the e-commerce platform did not accept a connection within "
                f"{self.connect_timeout:g}s",
                sent=False,
            ) from None
        except requests.Timeout:
            raise PlatformTimeout(
                f"the e-commerce platform did not answer within {self.read_timeout:g}s"
            ) from None
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise PlatformUnreachable(
                    "the e-commerce platform is unreachable", sent=False
                ) from None
            raise PlatformUnreachable(
                "the connection to the e-commerce platform dropped before it answered"
            ) from None
        except requests.RequestException:
            raise PlatformUnreachable("the e-commerce platform could not be called") from None
        text = response.content[:MAX_RECORDED_BODY].decode("utf-8", errors="replace")
        try:
            return PlatformAnswer(response.status_code, text, orjson.loads(response.content), True)
        except orjson.JSONDecodeError:
            return PlatformAnswer(response.status_code, text)
