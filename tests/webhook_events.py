"""Signed webhook events, as the e-commerce platform sends them."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

from adapters.webhook_signature import signature
from tests.events import api_event

WEBHOOK_SECRET = "test-webhook-secret"


def new_event(type_: str, **data) -> dict:
    return {"event_id": f"evt-{uuid.uuid4().hex[:16]}", "type": type_, "data": data}


def signed_event(
    payload: dict | str,
    sent_at: datetime,
    secret: str = WEBHOOK_SECRET,
    base64_body: bool = False,
    headers: dict | None = None,
) -> dict:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    timestamp = int(sent_at.replace(tzinfo=UTC).timestamp())
    event = api_event(
        "POST",
        "/webhooks/ecommerce",
        raw_body=raw,
        headers={
            "x-ecomm-timestamp": str(timestamp),
            "x-ecomm-signature": signature(secret, timestamp, raw.encode()),
            **(headers or {}),
        },
    )
    if base64_body:
        event["body"] = base64.b64encode(raw.encode()).decode()
        event["isBase64Encoded"] = True
    return event
