"""The local server that `make run` starts, called over HTTP like the website would."""

from __future__ import annotations

import json
import time
import zipfile

import pytest
import requests

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


def test_serverless_package_builds_the_lambda_bundle_offline(deployed):
    # Given the Serverless configuration, with API keys on as in staging and prod
    # When it is packaged without AWS credentials (once per session: tests/packaging.py)
    tmp_path = deployed.directory
    # Then the bundle holds the handlers, the domain and the dependencies, not the tests
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
    verbs = ("GET", "POST", "DELETE")
    api = {m: required for m, required in methods.items() if m.split()[0] in verbs}
    assert {m: r for m, r in api.items() if "Docs" not in m} == {
        "POST ApiGatewayMethodClubIdVarSubscribePost": True,
        "POST ApiGatewayMethodSubscriptionIdVarStatusPost": True,
        "POST ApiGatewayMethodSubscriptionUpdateIdVarPost": True,
        "GET ApiGatewayMethodSubscriptionEligibleGet": True,
        "POST ApiGatewayMethodSubscriptionIdVarChargeRequestidVarPost": True,
        "GET ApiGatewayMethodClubsGet": True,
        "GET ApiGatewayMethodClubIdVarGet": True,
        "GET ApiGatewayMethodSubscriptionIdVarGet": True,
        # The platform signs its webhooks (HMAC) and holds no API key.
        "POST ApiGatewayMethodWebhooksEcommercePost": False,
        # Flash promos (the website's key).
        "GET ApiGatewayMethodPromosEligibleGet": True,
        "POST ApiGatewayMethodPromosIdVarReservationsPost": True,
        "POST ApiGatewayMethodPromosIdVarReservationsReservationidVarCompletePost": True,
        # Club changes (docs/club-changes.md).
        "POST ApiGatewayMethodSubscriptionIdVarClubDashchangePost": True,
        "DELETE ApiGatewayMethodSubscriptionIdVarClubDashchangeDelete": True,
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
    # And every function is traced (but docs, which reaches nothing: no X-Ray rights), and
    # the charge function has a concurrency ceiling
    functions = {
        name: res["Properties"]
        for name, res in resources.items()
        if res["Type"] == "AWS::Lambda::Function"
    }
    assert all(
        f["TracingConfig"] == {"Mode": "Active"}
        for name, f in functions.items()
        if name != "DocsLambdaFunction"
    )
    assert functions["DocsLambdaFunction"]["TracingConfig"] == {"Mode": "PassThrough"}
    assert functions["ChargeLambdaFunction"]["ReservedConcurrentExecutions"] > 0
    # And our stack has functions-internal.yml's billing run and worker besides functions.yml
    assert {"BillingRunLambdaFunction", "BillingChargeLambdaFunction"} <= set(functions)


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


def test_make_run_serves_flash_promos_and_announces_them(local_server):
    base, fake, website = local_server["base"], local_server["fake"], local_server["website"]
    # Given the demo store's running promos, announced by the local announcer loop
    deadline = time.monotonic() + 60
    while "promo 1 announced to" not in local_server["log"].read_text():
        assert time.monotonic() < deadline, local_server["log"].read_text()[-3000:]
        time.sleep(0.5)
    assert "promo notification recorded locally" in local_server["log"].read_text()
    # When a demo customer near the store lists, reserves and completes promo 1
    listed = website.get(
        f"{base}/promos/eligible", params={"customer_id": "demo-promo-customer-3"}, timeout=30
    )
    assert listed.status_code == 200, listed.text
    assert 1 in [p["promo_id"] for p in listed.json()]
    held = website.post(
        f"{base}/promos/1/reservations", json={"customer_id": "demo-promo-customer-3"}, timeout=30
    )
    assert held.status_code == 201, held.text
    reservation = held.json()["reservation_id"]
    done = website.post(f"{base}/promos/1/reservations/{reservation}/complete/", timeout=30)
    # Then the fake platform recorded the order with the promo's price
    assert done.status_code == 200, done.text
    orders = requests.get(f"{fake}/orders", timeout=10).json()
    (order,) = [o for o in orders if o["request_id"] == done.json()["order"]["request_id"]]
    assert (order["sku_id"], order["unit_price"]) == (1001, "4.90")
