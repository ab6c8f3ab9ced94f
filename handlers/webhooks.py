"""POST /webhooks/ecommerce: signed events from the e-commerce platform.

The signature (adapters/webhook_signature.py) is checked over the raw body bytes exactly
as received, before the body is parsed. Neither the secret nor the signature is logged.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC

import orjson
from aws_lambda_powertools.metrics import MetricUnit

from adapters import alarms, secrets, webhook_signature
from common import clock, settings
from common.observability import logger, metrics
from domain import webhooks
from handlers import http
from handlers.schemas import PaymentOutcomeEvent, RefundEvent, WebhookBody
from repositories.unit_of_work import SqlAlchemyUnitOfWork

alarms.install()


def _raw_body(event: dict) -> bytes:
    raw = event.get("body")
    if not isinstance(raw, str) or raw == "":
        raise http.InvalidRequest("a JSON request body is required")
    if len(raw) > http.MAX_BODY_BYTES * 4 // 3 + 4:
        raise http.InvalidRequest("the request body is too large", 413, "payload_too_large")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise http.InvalidRequest("the request body is not valid base64") from None
    return raw.encode("utf-8", errors="surrogatepass")


def _header(event: dict, name: str) -> str | None:
    headers = event.get("headers") or {}
    if not isinstance(headers, dict):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def _verify(event: dict, body: bytes) -> None:
    config = settings.get()
    try:
        webhook_signature.verify(
            secrets.webhook_secret(config),
            _header(event, webhook_signature.TIMESTAMP_HEADER),
            _header(event, webhook_signature.SIGNATURE_HEADER),
            body,
            clock.now().replace(tzinfo=UTC).timestamp(),
            config.webhook_tolerance_seconds,
        )
    except webhook_signature.SignatureError as exc:
        raise http.InvalidRequest(exc.message, exc.status, exc.code) from None


def _domain_event(parsed) -> webhooks.PlatformEvent:
    data = parsed.data
    common = {
        "event_id": parsed.event_id,
        "type": webhooks.EventType(parsed.type),
        "occurred_at": parsed.occurred_at,
        "reason": data.reason,
    }
    if isinstance(parsed, PaymentOutcomeEvent):
        return webhooks.PlatformEvent(**common, request_id=data.request_id, outcome=data.outcome)
    if isinstance(parsed, RefundEvent):
        amount = None if data.amount is None else str(data.amount)
        return webhooks.PlatformEvent(**common, request_id=data.request_id, amount=amount)
    return webhooks.PlatformEvent(**common, customer_id=data.customer_id)


@http.endpoint(api_key=False)
def lambda_handler(event: dict) -> http.Response:
    body = _raw_body(event)
    if len(body) > http.MAX_BODY_BYTES:
        raise http.InvalidRequest("the request body is too large", 413, "payload_too_large")
    _verify(event, body)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise http.InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise http.InvalidRequest("the request body must be a JSON object")
    platform_event = _domain_event(http.validate(WebhookBody, parsed).root)
    receipt = webhooks.receive(SqlAlchemyUnitOfWork(), platform_event, clock.now())
    logger.info(
        "webhook received",
        event_id=platform_event.event_id,
        event_type=platform_event.type.value,
        receipt=receipt.value,
    )
    metrics.add_metric(name="WebhookReceived", unit=MetricUnit.Count, value=1)
    return http.Response(200, {"event_id": platform_event.event_id, "result": receipt.value})
