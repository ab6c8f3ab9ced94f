"""The billing run's SQS queue: messages sent in batches of ten (SendMessageBatch's limit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from domain.billing import BillingMessage

BATCH_SIZE = 10


class QueueSendFailed(RuntimeError):
    """Some messages could not be queued even after one retry; the next run sends them."""


class SqsBillingQueue:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        if client is None:
            # Imported here: only the billing run pays for boto3.
            import boto3

            client = boto3.client("sqs")
        self.queue_url = queue_url
        self.client = client

    def send(self, messages: Sequence[BillingMessage]) -> None:
        if len(messages) > BATCH_SIZE:
            raise ValueError(f"at most {BATCH_SIZE} messages per batch")
        entries = [
            {"Id": str(n), "MessageBody": orjson.dumps(m.to_dict()).decode()}
            for n, m in enumerate(messages)
        ]
        for _ in range(2):
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            failed = {f["Id"] for f in response.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                return
        raise QueueSendFailed(f"{len(entries)} billing message(s) could not be queued")
