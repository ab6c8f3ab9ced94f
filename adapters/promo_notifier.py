"""Where promo notifications go: the CRM's SNS topic in the cloud, a local record otherwise.

In the cloud each customer is one SNS message with the customer and the promo as message
attributes, so that the CRM's subscription can filter on them. Locally (no topic
configured) each notification is appended as one JSON line to a file and logged, so that
`make run` shows what would have been sent.
"""

from __future__ import annotations

import threading
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from common import settings
from common.observability import logger
from domain.promo_model import Notification

LOCAL_FILE = settings.PROJECT_ROOT / ".local" / "promo-notifications.jsonl"


def _body(notification: Notification) -> dict[str, Any]:
    return {
        "type": "promo-started",
        "promo_id": notification.promo_id,
        "customer_id": notification.customer_id,
        "store_id": notification.store_id,
        "sku": notification.sku,
        "ends_at": notification.ends_at.isoformat(),
    }


class SnsNotifier:
    def __init__(self, topic_arn: str, client: Any = None) -> None:
        if client is None:
            import boto3  # only the notification worker pays for boto3

            client = boto3.client("sns")
        self.topic_arn = topic_arn
        self.client = client

    def send(self, notification: Notification) -> str:
        response = self.client.publish(
            TopicArn=self.topic_arn,
            Message=orjson.dumps(_body(notification)).decode(),
            MessageAttributes={
                "customer_id": {"DataType": "String", "StringValue": notification.customer_id},
                "promo_id": {"DataType": "Number", "StringValue": str(notification.promo_id)},
            },
        )
        return response["MessageId"]


class RecordingNotifier:
    """Local stand-in for the topic: one JSON line per notification, in a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> str:
        message_id = f"local-{uuid.uuid4()}"
        line = orjson.dumps({"message_id": message_id, **_body(notification)}) + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as out:
                out.write(line)
        logger.info(
            "promo notification recorded locally",
            promo_id=notification.promo_id,
            message_id=message_id,
            file=str(self.path),
        )
        return message_id

    def sent(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line]


@lru_cache(maxsize=1)
def notifier() -> SnsNotifier | RecordingNotifier:
    config = settings.get()
    if config.promo_topic_arn:
        return SnsNotifier(config.promo_topic_arn)
    return RecordingNotifier(Path(config.promo_notifications_file or LOCAL_FILE))
