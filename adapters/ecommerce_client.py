"""The e-commerce platform over HTTP: POST {ECOMM_BASE_URL}/order/{request_id}."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from domain.errors import DomainError, LookupUnsupported, PlatformTimeout, PlatformUnreachable
from domain.ports import PlatformAnswer

MAX_RECORDED_BODY = 64 * 1024
# Raised by requests before anything reaches a socket.
_NEVER_SENT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


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
        lookup: bool = True,
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
        self.lookup = lookup

    def ready(self) -> None:
        """Resolve the secret now (cached by the secrets adapter): PlatformNotConfigured
        before anything is written rather than after."""
        self._secret()

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.api_key,
            "x-api-secret": self._secret(),
            "Content-Type": "application/json",
        }

    def _get(self, path: str, what: str) -> requests.Response:
        if not self.lookup:
            raise LookupUnsupported(what)
        try:
            response = self.session.get(
                f"{self.base_url}{path}", headers=self._headers(), timeout=self.timeout
            )
        except requests.RequestException:
            raise PlatformUnreachable(f"the e-commerce platform could not {what}") from None
        if response.status_code in (405, 501) or (
            response.status_code == 404 and "json" not in response.headers.get("content-type", "")
        ):
            raise LookupUnsupported(what)
        return response

    def find_order(self, request_id: str) -> dict | None:
        """GET /order/{request_id}: the order, or None when the platform has none."""
        response = self._get(f"/order/{quote(request_id, safe='')}", "look an order up")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PlatformUnreachable(
                f"the order lookup answered HTTP {response.status_code}", sent=False
            )
        return orjson.loads(response.content)

    def list_orders(self) -> list[dict]:
        response = self._get("/orders", "list its orders")
        if response.status_code != 200:
            raise LookupUnsupported("list its orders")
        return orjson.loads(response.content)

    def place_order(
        self, request_id: str, customer_id: str, sku_id: int, unit_price: Decimal | None = None
    ) -> PlatformAnswer:
        try:
            url = f"{self.base_url}/order/{quote(request_id, safe='')}"
            headers = self._headers()
            order: dict[str, object] = {"customer_id": customer_id, "sku_id": sku_id}
            if unit_price is not None:
                # Flash promos: the promo's price, as a decimal string (an assumption about
                # the real platform, see docs/promos.md); charges send none.
                order["unit_price"] = str(unit_price)
            payload = orjson.dumps(order)
        except DomainError:
            raise
        except Exception:
            # Nothing left this process: the attempt was not sent.
            raise PlatformUnreachable("the order could not be built", sent=False) from None
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
        except _NEVER_SENT:
            raise PlatformUnreachable(
                "the e-commerce platform could not be called (bad URL or header)", sent=False
            ) from None
        except requests.RequestException:
            raise PlatformUnreachable("the e-commerce platform could not be called") from None
        text = response.content[:MAX_RECORDED_BODY].decode("utf-8", errors="replace")
        retry_after = retry_after_value(response.headers.get("Retry-After"))
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return PlatformAnswer(response.status_code, text, retry_after=retry_after)
        return PlatformAnswer(response.status_code, text, body, True, retry_after)


def retry_after_value(header: str | None) -> str | None:
    """The platform's Retry-After, passed on only when it is what RFC 9110 allows:
    delta-seconds (up to a day) or an HTTP date; anything else is dropped (the caller then
    gets the default)."""
    if header is None:
        return None
    value = header.strip()
    if not value.isascii() or not value.isprintable():
        return None
    if value.isdigit():
        return str(int(value)) if int(value) <= 86_400 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return value if when is not None and when.tzinfo is not None else None
