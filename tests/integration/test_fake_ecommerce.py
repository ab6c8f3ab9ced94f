"""The fake e-commerce platform behaves like the real order API and injects faults on demand."""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from fake_ecommerce import server
from fake_ecommerce.__main__ import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-api-key"
API_SECRET = "test-api-secret-do-not-log"
AUTH = {"x-api-key": API_KEY, "x-api-secret": API_SECRET}
ORDER = {"customer_id": "cust-1", "sku_id": 42}
TIMEOUT = 5.0

# Each fault test runs twice: once asking for the fault per request, once globally.
FaultActivator = Callable[..., dict[str, str]]


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def platform(log_stream: io.StringIO) -> Iterator[server.FakePlatform]:
    with server.start(port=0, api_key=API_KEY, api_secret=API_SECRET, log_stream=log_stream) as p:
        yield p


@pytest.fixture(params=["by_header", "by_control_endpoint"])
def activate_fault(request: pytest.FixtureRequest, platform: server.FakePlatform) -> FaultActivator:
    def by_header(mode: str, delay: float | None = None) -> dict[str, str]:
        headers = {**AUTH, "x-fake-mode": mode}
        if delay is not None:
            headers["x-fake-delay"] = str(delay)
        return headers

    def by_control_endpoint(mode: str, delay: float | None = None) -> dict[str, str]:
        control: dict[str, object] = {"mode": mode}
        if delay is not None:
            control["delay"] = delay
        response = requests.post(f"{platform.base_url}/control", json=control, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return dict(AUTH)

    return by_header if request.param == "by_header" else by_control_endpoint


def post_order(
    platform: server.FakePlatform,
    request_id: str,
    body: object = ORDER,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.post(
        f"{platform.base_url}/order/{request_id}",
        json=body,
        headers=AUTH if headers is None else headers,
        timeout=TIMEOUT,
    )


# --- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no_headers"),
        pytest.param({"x-api-secret": API_SECRET}, id="missing_key"),
        pytest.param({"x-api-key": API_KEY}, id="missing_secret"),
        pytest.param({"x-api-key": "wrong", "x-api-secret": API_SECRET}, id="wrong_key"),
        pytest.param({"x-api-key": API_KEY, "x-api-secret": "wrong"}, id="wrong_secret"),
    ],
)
def test_an_order_without_valid_credentials_is_refused_with_401(
    platform: server.FakePlatform, headers: dict[str, str]
) -> None:
    # Given a platform expecting known credentials
    # When an order arrives with missing or wrong credentials
    response = post_order(platform, "req-auth", headers=headers)

    # Then it is refused with a JSON error and no order exists
    assert response.status_code == 401
    assert "error" in response.json()
    assert platform.orders == []


def test_the_request_log_names_method_path_and_status_but_never_the_secret(
    platform: server.FakePlatform, log_stream: io.StringIO
) -> None:
    # Given a platform logging to a stream we can read
    # When one order succeeds and one carries a wrong secret
    post_order(platform, "req-log")
    post_order(platform, "req-log-2", headers={**AUTH, "x-api-secret": "wrong-secret-value"})

    # Then each request is one line with method, path and status, and no secret appears
    log = log_stream.getvalue()
    lines = log.splitlines()
    assert any("POST /order/req-log 201" in line for line in lines)
    assert any("POST /order/req-log-2 401" in line for line in lines)
    assert API_SECRET not in log
    assert "wrong-secret-value" not in log


# --- body validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(["not", "an", "object"], id="array"),
        pytest.param({"sku_id": 1}, id="missing_customer_id"),
        pytest.param({"customer_id": "", "sku_id": 1}, id="empty_customer_id"),
        pytest.param({"customer_id": 7, "sku_id": 1}, id="numeric_customer_id"),
        pytest.param({"customer_id": "c"}, id="missing_sku_id"),
        pytest.param({"customer_id": "c", "sku_id": "1"}, id="string_sku_id"),
        pytest.param({"customer_id": "c", "sku_id": 1.5}, id="float_sku_id"),
        pytest.param({"customer_id": "c", "sku_id": True}, id="boolean_sku_id"),
    ],
)
def test_an_order_with_an_invalid_body_is_refused_with_400(
    platform: server.FakePlatform, body: object
) -> None:
    # Given a platform
    # When an authenticated order arrives with an invalid body
    response = post_order(platform, "req-invalid", body=body)

    # Then it is refused with a JSON error and no order is created
    assert response.status_code == 400
    assert "error" in response.json()
    assert platform.orders == []


def test_an_order_whose_body_is_not_json_is_refused_with_400(
    platform: server.FakePlatform,
) -> None:
    # Given a platform
    # When the body is not JSON at all
    response = requests.post(
        f"{platform.base_url}/order/req-raw", data=b"{oops", headers=AUTH, timeout=TIMEOUT
    )

    # Then it is refused with 400
    assert response.status_code == 400
    assert platform.orders == []


# --- orders and deduplication ---------------------------------------------------------------


def test_a_valid_order_is_created_charged_and_answered_with_201(
    platform: server.FakePlatform,
) -> None:
    # Given a platform
    # When a valid order arrives
    response = post_order(platform, "req-1")

    # Then it answers 201 with a charged order that echoes the request
    assert response.status_code == 201
    order = response.json()
    assert order["request_id"] == "req-1"
    assert order["customer_id"] == "cust-1"
    assert order["sku_id"] == 42
    assert order["status"] == "charged"
    assert len(order["order_id"]) == 36
    assert order["created_at"].endswith("Z")
    assert "duplicate" not in order
    assert platform.orders == [order]


def test_a_repeated_request_id_answers_200_with_the_same_order_and_creates_no_other(
    platform: server.FakePlatform,
) -> None:
    # Given an order already created for a request id
    first = post_order(platform, "req-dup").json()

    # When the same request id is posted again
    again = post_order(platform, "req-dup")

    # Then the answer is 200 with the same order flagged as a duplicate, and only one exists
    assert again.status_code == 200
    assert again.json() == {**first, "duplicate": True}
    assert platform.orders == [first]
    assert platform.calls == 2


def test_concurrent_calls_with_one_request_id_create_exactly_one_order(
    platform: server.FakePlatform,
) -> None:
    # Given a platform
    # When ten calls with the same request id arrive at once
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(
            pool.map(lambda _: post_order(platform, "req-race").status_code, range(10))
        )

    # Then exactly one created the order and the others were answered as duplicates
    assert statuses == [200] * 9 + [201]
    assert len(platform.orders) == 1
    assert platform.calls == 10


def test_get_orders_lists_every_order_received(platform: server.FakePlatform) -> None:
    # Given two orders created
    first = post_order(platform, "req-a").json()
    second = post_order(platform, "req-b").json()

    # When the orders are listed
    response = requests.get(f"{platform.base_url}/orders", timeout=TIMEOUT)

    # Then both appear, oldest first
    assert response.status_code == 200
    assert response.json() == [first, second]


def test_health_answers_ok(platform: server.FakePlatform) -> None:
    # Given a platform
    # When its health is checked
    response = requests.get(f"{platform.base_url}/health", timeout=TIMEOUT)

    # Then it answers 200 ok
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- fault modes, each by header and by control endpoint ---------------------------------------


def test_fail_mode_answers_500_without_creating_an_order(
    platform: server.FakePlatform, activate_fault: FaultActivator
) -> None:
    # Given fail mode
    headers = activate_fault("fail")

    # When an order arrives
    response = post_order(platform, "req-fail", headers=headers)

    # Then it answers 500 with a JSON error and records nothing
    assert response.status_code == 500
    assert "error" in response.json()
    assert platform.orders == []


def test_reject_mode_answers_422_payment_declined_without_creating_an_order(
    platform: server.FakePlatform, activate_fault: FaultActivator
) -> None:
    # Given reject mode
    headers = activate_fault("reject")

    # When an order arrives
    response = post_order(platform, "req-reject", headers=headers)

    # Then the payment is declined and nothing is recorded
    assert response.status_code == 422
    assert response.json() == {"error": "payment declined"}
    assert platform.orders == []


def test_slow_mode_waits_for_the_delay_then_creates_the_order(
    platform: server.FakePlatform, activate_fault: FaultActivator
) -> None:
    # Given slow mode with a short delay
    headers = activate_fault("slow", delay=0.3)

    # When an order arrives
    started = time.monotonic()
    response = post_order(platform, "req-slow", headers=headers)
    elapsed = time.monotonic() - started

    # Then the answer comes after the delay and is a normal creation
    assert elapsed >= 0.3
    assert response.status_code == 201
    assert len(platform.orders) == 1


def test_drop_mode_records_the_order_but_closes_the_connection_without_answering(
    platform: server.FakePlatform, activate_fault: FaultActivator
) -> None:
    # Given drop mode
    headers = activate_fault("drop")

    # When an order arrives, then the client sees the connection dropped
    with pytest.raises(requests.ConnectionError):
        post_order(platform, "req-drop", headers=headers)

    # And the platform processed the order anyway
    assert [order["request_id"] for order in platform.orders] == ["req-drop"]


def test_garbage_mode_answers_200_with_a_body_that_is_not_json_and_records_the_order(
    platform: server.FakePlatform, activate_fault: FaultActivator
) -> None:
    # Given garbage mode
    headers = activate_fault("garbage")

    # When an order arrives
    response = post_order(platform, "req-garbage", headers=headers)

    # Then the answer claims JSON but is not, while the order exists
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == b"not json{"
    assert len(platform.orders) == 1


def test_two_slow_requests_in_parallel_take_about_one_delay_not_two(
    platform: server.FakePlatform,
) -> None:
    # Given two orders asking for a 0.6 s delay
    headers = {**AUTH, "x-fake-mode": "slow", "x-fake-delay": "0.6"}

    # When both are sent at the same time
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda rid: post_order(platform, rid, headers=headers), "ab"))
    elapsed = time.monotonic() - started

    # Then they were served in parallel: well under two delays (1.2 s)
    assert [r.status_code for r in responses] == [201, 201]
    assert 0.6 <= elapsed < 1.1


def test_global_mode_with_times_applies_to_that_many_calls_then_returns_to_normal(
    platform: server.FakePlatform,
) -> None:
    # Given fail mode set for the next two calls
    control_url = f"{platform.base_url}/control"
    requests.post(control_url, json={"mode": "fail", "times": 2}, timeout=TIMEOUT)

    # When three orders arrive
    statuses = [post_order(platform, f"req-times-{i}").status_code for i in range(3)]

    # Then the first two fail, the third succeeds and the mode is back to normal
    assert statuses == [500, 500, 201]
    assert requests.get(control_url, timeout=TIMEOUT).json()["mode"] == "normal"


def test_get_control_shows_the_mode_and_the_calls_left(platform: server.FakePlatform) -> None:
    # Given reject mode set for three calls
    control_url = f"{platform.base_url}/control"
    requests.post(control_url, json={"mode": "reject", "times": 3}, timeout=TIMEOUT)

    # When one order consumes one of them
    post_order(platform, "req-control")

    # Then the control endpoint shows two left
    assert requests.get(control_url, timeout=TIMEOUT).json() == {
        "mode": "reject",
        "delay": 2.0,
        "times_left": 2,
    }


def test_a_request_header_wins_over_the_global_mode(platform: server.FakePlatform) -> None:
    # Given a global fail mode
    platform.set_mode("fail")

    # When an order asks for normal behaviour by header
    response = post_order(platform, "req-override", headers={**AUTH, "x-fake-mode": "normal"})

    # Then it is created, and the global mode still applies to the next call
    assert response.status_code == 201
    assert post_order(platform, "req-after").status_code == 500


@pytest.mark.parametrize(
    "control",
    [
        pytest.param({"mode": "explode"}, id="unknown_mode"),
        pytest.param({"mode": "slow", "delay": -1}, id="negative_delay"),
        pytest.param({"mode": "fail", "times": 0}, id="zero_times"),
        pytest.param({"mode": "fail", "time": 2}, id="misspelt_field"),
    ],
)
def test_an_invalid_control_request_is_refused_with_400_and_changes_nothing(
    platform: server.FakePlatform, control: dict[str, object]
) -> None:
    # Given a platform in normal mode
    # When the control endpoint gets an invalid request
    response = requests.post(f"{platform.base_url}/control", json=control, timeout=TIMEOUT)

    # Then it is refused and the mode stays normal
    assert response.status_code == 400
    assert platform.control["mode"] == "normal"


def test_an_unknown_fault_mode_header_is_refused_with_400(platform: server.FakePlatform) -> None:
    # Given a platform
    # When an order asks for a mode that does not exist
    response = post_order(platform, "req-bad-mode", headers={**AUTH, "x-fake-mode": "explode"})

    # Then it is refused and nothing is recorded
    assert response.status_code == 400
    assert platform.orders == []


def test_control_reset_clears_orders_and_mode(platform: server.FakePlatform) -> None:
    # Given an order and a global fault mode
    post_order(platform, "req-before-reset")
    platform.set_mode("reject")

    # When the control reset endpoint is called
    response = requests.post(f"{platform.base_url}/control/reset", timeout=TIMEOUT)

    # Then orders and mode are gone and orders are created again
    assert response.status_code == 200
    assert platform.orders == []
    assert platform.control["mode"] == "normal"
    assert post_order(platform, "req-before-reset").status_code == 201


def test_set_mode_rejects_an_unknown_mode(platform: server.FakePlatform) -> None:
    # Given a platform
    # When the Python API is asked for an unknown mode, then it raises
    with pytest.raises(server.InvalidModeError):
        platform.set_mode("explode")


# --- command line ------------------------------------------------------------------------------


def test_credentials_come_from_flags_then_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no credential variables, then defaults apply
    monkeypatch.delenv("FAKE_ECOMM_API_KEY", raising=False)
    monkeypatch.delenv("FAKE_ECOMM_API_SECRET", raising=False)
    defaults = parse_args([])
    assert (defaults.api_key, defaults.api_secret) == ("local-api-key", "local-api-secret")

    # Given credential variables, then they replace the defaults
    monkeypatch.setenv("FAKE_ECOMM_API_KEY", "env-key")
    monkeypatch.setenv("FAKE_ECOMM_API_SECRET", "env-secret")
    from_env = parse_args([])
    assert (from_env.api_key, from_env.api_secret) == ("env-key", "env-secret")

    # Given flags too, then the flags win
    from_flags = parse_args(["--api-key", "flag-key", "--api-secret", "flag-secret"])
    assert (from_flags.api_key, from_flags.api_secret) == ("flag-key", "flag-secret")


def test_python_m_fake_ecommerce_serves_on_the_printed_port_and_stops_on_sigterm() -> None:
    # Given the module started as a program on any free port
    env = {**os.environ, "FAKE_ECOMM_API_KEY": "env-key", "FAKE_ECOMM_API_SECRET": "env-secret"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fake_ecommerce", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # When its announcement line is read
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
        line = lines.get(timeout=TIMEOUT).strip()
        prefix = "fake e-commerce platform listening on "
        assert line.startswith(prefix), line
        base_url = line.removeprefix(prefix)

        # Then it answers health checks and accepts the credentials from the environment
        assert requests.get(f"{base_url}/health", timeout=TIMEOUT).json() == {"status": "ok"}
        order = requests.post(
            f"{base_url}/order/req-cli",
            json=ORDER,
            headers={"x-api-key": "env-key", "x-api-secret": "env-secret"},
            timeout=TIMEOUT,
        )
        assert order.status_code == 201

        # And it stops cleanly when terminated
        process.terminate()
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_fake_records_an_optional_unit_price_and_refuses_a_bad_one():
    with server.start(api_key="k", api_secret="s", log_stream=io.StringIO()) as platform:
        headers = {"x-api-key": "k", "x-api-secret": "s"}
        body = {"customer_id": "c", "sku_id": 1}

        def order(request_id: str, payload: dict) -> int:
            url = f"{platform.base_url}/order/{request_id}"
            return requests.post(url, json=payload, headers=headers, timeout=10).status_code

        assert order("a", {**body, "unit_price": "4.90"}) == 201
        assert order("b", body) == 201
        for bad in ("-1", "abc", True, "nan", [1]):
            assert order("c", {**body, "unit_price": bad}) == 400, bad
        assert [o.get("unit_price") for o in platform.orders] == ["4.90", None]
