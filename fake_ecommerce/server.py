"""A stdlib-only fake of the e-commerce platform's order API.

Serves `POST /order/{request_id}` like the real platform, plus test helpers (`GET /orders`,
`/control`) and fault injection. See README.md in this package for the HTTP contract.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TextIO, cast
from urllib.parse import unquote, urlsplit

DEFAULT_API_KEY = "local-api-key"
DEFAULT_API_SECRET = "local-api-secret"  # noqa: S105 (local-only default, not a real secret)
DEFAULT_SLOW_DELAY = 2.0
MODES = ("normal", "fail", "reject", "slow", "drop", "garbage")
GARBAGE_BODY = b"not json{"
MAX_BODY_BYTES = 1024 * 1024
_ORDER_PREFIX = "/order/"
_CONTROL_FIELDS = frozenset({"mode", "delay", "times"})
WEBHOOK_TYPES = ("payment-outcome", "refund", "card-unavailable")
WEBHOOK_TIMEOUT = 5.0

Json = dict[str, Any]


class InvalidModeError(ValueError):
    """A fault mode, delay or times value the fake does not understand."""


class _BadRequestBodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Outcome:
    """What to answer to one request; `body is None` means: close without answering."""

    status: int
    body: bytes | None

    @classmethod
    def json(cls, status: int, payload: object) -> _Outcome:
        return cls(status, json.dumps(payload).encode())

    @classmethod
    def drop(cls) -> _Outcome:
        return cls(0, None)

    @classmethod
    def error(cls, status: int, message: str) -> _Outcome:
        return cls.json(status, {"error": message})


@dataclass
class _GlobalMode:
    mode: str = "normal"
    delay: float = DEFAULT_SLOW_DELAY
    times_left: int | None = None

    def as_json(self) -> Json:
        return {"mode": self.mode, "delay": self.delay, "times_left": self.times_left}


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_delay(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidModeError(f"delay must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidModeError(f"delay must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidModeError(f"delay must be a finite number >= 0, got {value!r}")
    return float(value)


def _validated_mode(mode: object, delay: object = None, times: object = None) -> _GlobalMode:
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidModeError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    parsed_delay = DEFAULT_SLOW_DELAY if delay is None else _parse_delay(delay)
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise InvalidModeError(f"times must be an integer >= 1 or omitted, got {times!r}")
    if mode == "normal":
        return _GlobalMode(delay=parsed_delay)
    return _GlobalMode(mode=mode, delay=parsed_delay, times_left=times)


def _parse_order_body(body: bytes) -> tuple[str, int, str | None]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("body must be a JSON object") from None
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    customer_id = payload.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id.strip():
        raise ValueError("customer_id must be a non-empty string")
    sku_id = payload.get("sku_id")
    # bool is a subclass of int, but `true` is not a SKU.
    if isinstance(sku_id, bool) or not isinstance(sku_id, int):
        raise ValueError("sku_id must be an integer")
    # Optional (flash promos): the price to charge, a decimal string or number, recorded.
    unit_price = payload.get("unit_price")
    if unit_price is not None:
        if isinstance(unit_price, bool) or not isinstance(unit_price, str | int | float):
            raise ValueError("unit_price must be a decimal number")
        try:
            value = float(unit_price)
            if not (0 <= value < float("inf")):
                raise ValueError
        except ValueError:
            raise ValueError("unit_price must be a non-negative decimal number") from None
        unit_price = str(unit_price)
    return customer_id, sku_id, unit_price


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


class FakePlatform:
    """One fake platform server; create it with `start()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        *,
        log_stream: TextIO | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._webhooks: list[Json] = []
        self._api_key = api_key.encode()
        self._api_secret = api_secret.encode()
        self._log_stream = log_stream
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._stopping = threading.Event()
        self._orders: list[Json] = []
        self._orders_by_request_id: dict[str, Json] = {}
        self._calls = 0
        self._global_mode = _GlobalMode()
        self._httpd = _Server((host, port), _Handler, self)
        self._host = host
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakePlatform:
        if self._stopping.is_set():
            raise RuntimeError("a stopped FakePlatform cannot be restarted; start a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                # A short poll keeps stop() fast; it only costs a wake-up every 50 ms.
                kwargs={"poll_interval": 0.05},
                name=f"fake-ecommerce:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        self._httpd.close_open_connections()

    def __enter__(self) -> FakePlatform:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- inspection and control ------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def orders(self) -> list[Json]:
        """A snapshot of the orders created so far, oldest first."""
        with self._lock:
            return [dict(order) for order in self._orders]

    @property
    def calls(self) -> int:
        """How many `POST /order/...` calls arrived, whatever their outcome (duplicates too)."""
        with self._lock:
            return self._calls

    @property
    def webhooks(self) -> list[Json]:
        """Webhook deliveries so far (event, status answered or error), oldest first."""
        with self._lock:
            return [dict(w) for w in self._webhooks]

    @property
    def control(self) -> Json:
        """The global fault mode, as `GET /control` shows it."""
        with self._lock:
            return self._global_mode.as_json()

    def set_mode(self, mode: str, delay: float | None = None, times: int | None = None) -> Json:
        """Set the global fault mode, like `POST /control`; raises InvalidModeError."""
        new_mode = _validated_mode(mode, delay, times)
        with self._lock:
            self._global_mode = new_mode
            return new_mode.as_json()

    def reset(self) -> None:
        """Forget all orders and calls and go back to normal mode."""
        with self._lock:
            self._orders.clear()
            self._orders_by_request_id.clear()
            self._calls = 0
            self._global_mode = _GlobalMode()

    def create_order(self, request_id: str, customer_id: str, sku_id: int) -> tuple[Json, bool]:
        """Create (or find, deduplicated by request id) an order in-process, as a
        successful `POST /order/{request_id}` would; returns (order, created)."""
        return self._create_or_get_order(request_id, customer_id, sku_id)

    def order(self, request_id: str) -> Json | None:
        """The order created under `request_id`, or None (`GET /order/{request_id}`)."""
        with self._lock:
            found = self._orders_by_request_id.get(request_id)
            return dict(found) if found is not None else None

    def fail_payment(self, request_id: str, reason: str = "insufficient_funds") -> Json | None:
        """Mark an order's payment failed (what a payment-outcome failure reports)."""
        with self._lock:
            found = self._orders_by_request_id.get(request_id)
            if found is not None:
                found["status"] = "payment_failed"
                found["failure_reason"] = reason
            return dict(found) if found is not None else None

    def handle_get_order(self, request_id: str, headers: Message) -> _Outcome:
        auth_error = self._credentials_error(headers)
        if auth_error is not None:
            return _Outcome.error(401, auth_error)
        found = self.order(request_id)
        if found is None:
            return _Outcome.error(404, f"no order with request id {request_id}")
        return _Outcome.json(200, found)

    # --- request handling (called from handler threads) -------------------------------------

    def handle_order(self, request_id: str, headers: Message, body: bytes) -> _Outcome:
        with self._lock:
            self._calls += 1
        auth_error = self._credentials_error(headers)
        if auth_error is not None:
            return _Outcome.error(401, auth_error)
        try:
            customer_id, sku_id, unit_price = _parse_order_body(body)
        except ValueError as exc:
            return _Outcome.error(400, str(exc))
        try:
            mode, delay = self._take_mode(headers)
        except InvalidModeError as exc:
            return _Outcome.error(400, str(exc))

        # An Event instead of time.sleep so that stop() does not wait for sleepers; once the
        # server is stopping its sockets are closing, so there is nobody left to answer.
        if mode == "slow" and self._stopping.wait(delay):
            return _Outcome.drop()
        if mode == "fail":
            return _Outcome.error(500, "internal server error (injected fault)")
        if mode == "reject":
            return _Outcome.error(422, "payment declined")

        order, created = self._create_or_get_order(request_id, customer_id, sku_id, unit_price)
        if created and self._webhook_url:
            # Like the real platform: the payment's outcome comes later, on its own.
            threading.Thread(
                target=self.emit,
                args=("payment-outcome", {"request_id": request_id, "outcome": "success"}),
                daemon=True,
            ).start()
        if mode == "drop":
            return _Outcome.drop()
        if mode == "garbage":
            return _Outcome(200, GARBAGE_BODY)
        if created:
            return _Outcome.json(201, order)
        return _Outcome.json(200, {**order, "duplicate": True})

    def handle_control(self, body: bytes) -> _Outcome:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _Outcome.error(400, "body must be a JSON object")
        if not isinstance(payload, dict):
            return _Outcome.error(400, "body must be a JSON object")
        unknown = sorted(set(payload) - _CONTROL_FIELDS)
        if unknown:
            return _Outcome.error(400, f"unknown field(s): {', '.join(unknown)}")
        try:
            new_mode = _validated_mode(
                payload.get("mode"), payload.get("delay"), payload.get("times")
            )
        except InvalidModeError as exc:
            return _Outcome.error(400, str(exc))
        with self._lock:
            self._global_mode = new_mode
            return _Outcome.json(200, new_mode.as_json())

    # --- webhooks --------------------------------------------------------------------------

    def emit(self, event_type: str, data: Json) -> Json:
        """Send one signed webhook to the configured URL; returns the delivery record."""
        if not self._webhook_url or not self._webhook_secret:
            raise InvalidModeError("no webhook URL and secret configured (--webhook-url)")
        if event_type not in WEBHOOK_TYPES:
            raise InvalidModeError(f"type must be one of {', '.join(WEBHOOK_TYPES)}")
        event = {
            "event_id": f"evt_{uuid.uuid4().hex}",
            "type": event_type,
            "occurred_at": _utc_now_iso().replace("Z", "+00:00"),
            "data": data,
        }
        body = json.dumps(event).encode()
        timestamp = str(int(time.time()))
        mac = hmac.new(
            self._webhook_secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        )
        request = urllib.request.Request(  # noqa: S310 (a configured http(s) URL)
            self._webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Ecomm-Timestamp": timestamp,
                "X-Ecomm-Signature": f"v1={mac.hexdigest()}",
            },
        )
        delivery: Json = {"event": event, "status": None, "error": None}
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310
                delivery["status"] = response.status
        except urllib.error.HTTPError as exc:
            delivery["status"] = exc.code
        except (OSError, ValueError) as exc:
            delivery["error"] = type(exc).__name__
        with self._lock:
            self._webhooks.append(delivery)
        self.log(f"webhook {event_type} {event['event_id']} -> {delivery['status']}")
        return delivery

    def handle_emit(self, body: bytes) -> _Outcome:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _Outcome.error(400, "body must be a JSON object")
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return _Outcome.error(400, 'body must be a JSON object with a "type"')
        data = {k: v for k, v in payload.items() if k != "type"}
        try:
            delivery = self.emit(payload["type"], data)
        except InvalidModeError as exc:
            return _Outcome.error(400, str(exc))
        return _Outcome.json(200 if delivery["status"] else 502, delivery)

    def log(self, line: str) -> None:
        stream = self._log_stream if self._log_stream is not None else sys.stderr
        with self._log_lock:
            try:
                stream.write(f"fake-ecommerce {_utc_now_iso()} {_printable(line)}\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed log stream must not break request handling

    def _credentials_error(self, headers: Message) -> str | None:
        for name, expected in (("x-api-key", self._api_key), ("x-api-secret", self._api_secret)):
            value = headers.get(name)
            if value is None:
                return f"missing {name} header"
            # Constant-time comparison, like a real platform; never echo the value.
            if not hmac.compare_digest(value.encode(), expected):
                return f"invalid {name}"
        return None

    def _take_mode(self, headers: Message) -> tuple[str, float]:
        header_mode = headers.get("x-fake-mode")
        header_delay = headers.get("x-fake-delay")
        delay = None if header_delay is None else _parse_delay(header_delay.strip())
        if header_mode is not None:
            mode = header_mode.strip().lower()
            if mode not in MODES:
                raise InvalidModeError(f"x-fake-mode must be one of {', '.join(MODES)}")
            return mode, DEFAULT_SLOW_DELAY if delay is None else delay
        with self._lock:
            current = self._global_mode
            mode, global_delay = current.mode, current.delay
            if current.times_left is not None:
                current.times_left -= 1
                if current.times_left <= 0:
                    self._global_mode = _GlobalMode()
        return mode, global_delay if delay is None else delay

    def _create_or_get_order(
        self, request_id: str, customer_id: str, sku_id: int, unit_price: str | None = None
    ) -> tuple[Json, bool]:
        with self._lock:
            existing = self._orders_by_request_id.get(request_id)
            if existing is not None:
                return dict(existing), False
            order: Json = {
                "order_id": str(uuid.uuid4()),
                "request_id": request_id,
                "customer_id": customer_id,
                "sku_id": sku_id,
                **({"unit_price": unit_price} if unit_price is not None else {}),
                "status": "charged",
                "created_at": _utc_now_iso(),
            }
            self._orders.append(order)
            self._orders_by_request_id[request_id] = order
            return dict(order), True


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET,
    *,
    log_stream: TextIO | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> FakePlatform:
    """Start a fake platform in a daemon thread; port 0 picks a free port (see `.base_url`).

    Request logs go to `log_stream`, or to whatever `sys.stderr` is at the time of writing.
    With `webhook_url` and `webhook_secret` it sends signed webhooks there.
    """
    return FakePlatform(
        host,
        port,
        api_key,
        api_secret,
        log_stream=log_stream,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    ).start()


class _Server(ThreadingHTTPServer):
    # Handler threads are daemons and are not joined: stop() must not wait for a slow request.
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        platform: FakePlatform,
    ) -> None:
        self.platform = platform
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take
        # seconds in sandboxes; the fake never needs the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        # Keep-alive connections outlive serve_forever(); without this a stopped fake would
        # still answer on connections that clients keep in their pools.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small answers go out at once instead of waiting ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "FakeEcommerce/1.0"

    @property
    def platform(self) -> FakePlatform:
        return cast(_Server, self.server).platform

    # --- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self._route_path()
        if path == "/health":
            self._send(_Outcome.json(200, {"status": "ok"}))
        elif path == "/orders":
            self._send(_Outcome.json(200, self.platform.orders))
        elif path == "/control":
            self._send(_Outcome.json(200, self.platform.control))
        elif path == "/webhooks":
            self._send(_Outcome.json(200, self.platform.webhooks))
        elif path.startswith(_ORDER_PREFIX) and "/" not in path[len(_ORDER_PREFIX) :]:
            request_id = unquote(path[len(_ORDER_PREFIX) :])
            self._send(self.platform.handle_get_order(request_id, self.headers))
        else:
            self._send(_Outcome.error(404, "not found"))

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = self._route_path()
        if path.startswith(_ORDER_PREFIX):
            raw_request_id = path[len(_ORDER_PREFIX) :]
            if raw_request_id and "/" not in raw_request_id:
                request_id = unquote(raw_request_id)
                self._send(self.platform.handle_order(request_id, self.headers, body))
                return
        elif path == "/control":
            self._send(self.platform.handle_control(body))
            return
        elif path == "/control/webhook":
            self._send(self.platform.handle_emit(body))
            return
        elif path == "/control/reset":
            self.platform.reset()
            self._send(_Outcome.json(200, self.platform.control))
            return
        self._send(_Outcome.error(404, "not found"))

    def _method_not_allowed(self) -> None:
        # The body is not read, so the connection cannot be reused.
        self._send(_Outcome.error(405, "method not allowed"), close=True)

    do_PUT = do_PATCH = do_DELETE = _method_not_allowed

    # --- I/O helpers -----------------------------------------------------------------------

    def _route_path(self) -> str:
        path = urlsplit(self.path).path
        return path.rstrip("/") if path != "/" else path

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering an error for an unreadable one."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked_body()
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                return b""
            try:
                length = int(length_header)
            except ValueError:
                raise _BadRequestBodyError(400, "invalid Content-Length") from None
            if length < 0:
                raise _BadRequestBodyError(400, "invalid Content-Length")
            if length > MAX_BODY_BYTES:
                raise _BadRequestBodyError(413, "request body too large")
            return self.rfile.read(length)
        except _BadRequestBodyError as exc:
            self._send(_Outcome.error(exc.status, str(exc)), close=True)
            return None

    def _read_chunked_body(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequestBodyError(400, "invalid chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BadRequestBodyError(413, "request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, outcome: _Outcome, *, close: bool = False) -> None:
        if outcome.body is None:
            # Drop: the request was processed but the client gets no answer at all.
            self.close_connection = True
            self.platform.log(f"{self.command} {self.path} dropped")
            return
        self.send_response(outcome.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(outcome.body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(outcome.body)

    # --- logging: one line per request, never headers (x-api-secret must not leak) ----------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        command = self.command or "-"
        path = getattr(self, "path", "-")
        self.platform.log(f"{command} {path} {int(code) if isinstance(code, int) else code}")

    def log_message(self, format: str, *args: Any) -> None:
        self.platform.log(f"error: {format % args}")
