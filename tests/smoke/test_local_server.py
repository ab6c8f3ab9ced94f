"""The local server that `make run` starts, called over HTTP like the website would."""

from __future__ import annotations

import json
import os
import subprocess
import time
import zipfile

import pytest
import requests

from tests.smoke.conftest import ROOT

pytestmark = pytest.mark.smoke


def test_eligible_lists_the_demo_subscriptions_that_are_due(local_server):
    # Given the demo data
    # When the billing operation asks for eligible subscriptions
    answer = local_server["billing"].get(
        f"{local_server['base']}/subscription/eligible", timeout=30
    )
    # Then the active members of active and closed clubs are listed, by id
    assert answer.status_code == 200
    assert answer.json() == [
        "demo-sub-active-1",
        "demo-sub-active-2",
        "demo-sub-active-3",
        "demo-sub-closed-club",
    ]


def test_subscribe_then_pause_over_http_with_and_without_trailing_slash(local_server):
    base, website = local_server["base"], local_server["website"]
    # Given the demo's active club 1
    # When a new customer subscribes (trailing slash) and then again (no slash)
    first = website.post(f"{base}/club/1/subscribe/", json={"customer_id": "smoke-1"}, timeout=30)
    again = website.post(f"{base}/club/1/subscribe", json={"customer_id": "smoke-1"}, timeout=30)
    # Then the first is created and the second refused, naming the first
    assert first.status_code == 201, first.text
    assert again.status_code == 409
    assert again.json()["error"]["subscription_id"] == first.json()["id"]
    # And pausing it for 30 days writes the pause and the automatic return
    paused = website.post(
        f"{base}/subscription/{first.json()['id']}/status/",
        json={"status_id": 3, "interval": 30},
        timeout=30,
    )
    assert paused.status_code == 200
    assert [row["status"] for row in paused.json()] == ["PAUSED", "ACTIVE"]


def test_bad_input_over_http_is_a_clear_400(local_server):
    # Given the local server
    # When the body is not JSON
    answer = local_server["website"].post(
        f"{local_server['base']}/club/1/subscribe/",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    # Then 400 in the error envelope
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"


def test_serverless_package_builds_the_lambda_bundle_offline(tmp_path):
    # Given the Serverless configuration, with API keys on as in staging and prod
    # When it is packaged without AWS credentials
    result = subprocess.run(
        [
            "npx",
            "--no-install",
            "serverless",
            "package",
            "--package",
            str(tmp_path),
            "--param",
            "privateApi=true",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        },
    )
    # Then the bundle holds the handlers, the domain and the dependencies, not the tests
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    names = zipfile.ZipFile(tmp_path / "beer-club-subscriptions.zip").namelist()
    assert "handlers/subscribe.py" in names
    assert "domain/subscriptions.py" in names
    assert any(n.startswith("sqlalchemy/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    # And /docs has what it serves: the document and Powertools' Swagger UI, no node_modules
    assert "openapi.yaml" in names
    assert "handlers/docs.py" in names
    swagger_ui = "aws_lambda_powertools/event_handler/openapi/swagger_ui/"
    assert f"{swagger_ui}swagger-ui-bundle.min.js" in names
    assert f"{swagger_ui}swagger-ui.min.css" in names
    assert not any(n.startswith("node_modules/") for n in names)
    # And the stack asks for a key on every API method, through two plans of their own
    resources = json.loads((tmp_path / "cloudformation-template-update-stack.json").read_text())[
        "Resources"
    ]
    methods = {
        res["Properties"]["HttpMethod"] + " " + name: res["Properties"].get("ApiKeyRequired")
        for name, res in resources.items()
        if res["Type"] == "AWS::ApiGateway::Method"
    }
    api = {m: required for m, required in methods.items() if m.split()[0] in ("GET", "POST")}
    assert {m: r for m, r in api.items() if "Docs" not in m} == {
        "POST ApiGatewayMethodClubIdVarSubscribePost": True,
        "POST ApiGatewayMethodSubscriptionIdVarStatusPost": True,
        "GET ApiGatewayMethodSubscriptionEligibleGet": True,
        "POST ApiGatewayMethodSubscriptionIdVarChargeRequestidVarPost": True,
        # The platform signs its webhooks (HMAC) and holds no API key.
        "POST ApiGatewayMethodWebhooksEcommercePost": False,
        # The operators' desk (issue 16).
        "GET ApiGatewayMethodBillingForecastGet": True,
    }
    assert not any(r for m, r in api.items() if "Docs" in m)
    plans = {
        res["Properties"]["UsagePlanName"]: res["Properties"]
        for res in resources.values()
        if res["Type"] == "AWS::ApiGateway::UsagePlan"
    }
    assert sorted(plans) == [
        "beer-club-subscriptions-billing-dev",
        "beer-club-subscriptions-website-dev",
    ]
    assert all(
        plan["Throttle"]["RateLimit"] > 0 and plan["Quota"]["Limit"] > 0 for plan in plans.values()
    )
    keys = [res for res in resources.values() if res["Type"] == "AWS::ApiGateway::UsagePlanKey"]
    assert len(keys) == 2
    # And every function is traced, and the charge function has a concurrency ceiling
    functions = {
        name: res["Properties"]
        for name, res in resources.items()
        if res["Type"] == "AWS::Lambda::Function"
    }
    assert all(f["TracingConfig"] == {"Mode": "Active"} for f in functions.values())
    assert functions["ChargeLambdaFunction"]["ReservedConcurrentExecutions"] > 0


def test_charge_over_http_reaches_the_fake_platform_once(local_server):
    base, billing = local_server["base"], local_server["billing"]
    # Given the demo's active subscription and the fake platform started with the server
    # When it is charged twice in the same month
    first = billing.post(f"{base}/subscription/demo-sub-active-2/charge/smoke-1", timeout=30)
    second = billing.post(f"{base}/subscription/demo-sub-active-2/charge/smoke-2", timeout=30)
    # Then the first placed the order, the second replayed it, and the platform has one
    assert first.status_code == 201, first.text
    assert second.status_code == 200
    assert second.json()["replayed"] is True
    orders = requests.get(f"{local_server['fake']}/orders", timeout=10).json()
    assert [o["request_id"] for o in orders] == ["smoke-1"]


def test_make_run_closes_the_loop_with_signed_webhooks(local_server):
    base, fake, billing = local_server["base"], local_server["fake"], local_server["billing"]
    # Given the demo's third active subscription, charged over HTTP
    charged = billing.post(f"{base}/subscription/demo-sub-active-3/charge/smoke-loop", timeout=30)
    assert charged.status_code == 201, charged.text

    # When the fake platform reports the payment and then a refund, signed, to our webhook URL
    def ours() -> list[dict]:
        sent = requests.get(f"{fake}/webhooks", timeout=10).json()
        return [d for d in sent if d["event"]["data"].get("request_id") == "smoke-loop"]

    deadline = time.monotonic() + 30
    while not ours():
        assert time.monotonic() < deadline, "no webhook was sent"
        time.sleep(0.2)
    refund = requests.post(
        f"{fake}/control/webhook",
        json={"type": "refund", "request_id": "smoke-loop", "reason": "smoke test"},
        timeout=30,
    )
    # Then our API accepted both
    assert refund.json()["status"] == 200
    assert [(d["event"]["type"], d["status"]) for d in ours()] == [
        ("payment-outcome", 200),
        ("refund", 200),
    ]
    # And an unsigned event is refused
    forged = requests.post(f"{base}/webhooks/ecommerce", json={"event_id": "x"}, timeout=30)
    assert forged.status_code == 401
