"""An SQS queue written in batches of ten (SendMessageBatch's limit), each batch retried
once for the entries SQS reports failed: the billing run's and the promo announcer's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

BATCH_SIZE = 10


class QueueSendFailed(RuntimeError):
    """Some messages could not be queued even after one retry."""


class Message(Protocol):
    def to_dict(self) -> dict: ...


class SqsBatchQueue:
    # What one message is, for the error ("billing message", "promo announcement").
    noun = "message"

    def __init__(self, queue_url: str, client: Any = None, connections: int = 10) -> None:
        if client is None:
            # Imported here: only the functions that queue pay for boto3.
            import boto3
            from botocore.config import Config

            # One HTTP connection per thread sending at once (botocore keeps 10).
            config = Config(max_pool_connections=max(10, connections))
            client = boto3.client("sqs", config=config)
        self.queue_url = queue_url
        self.client = client

    def send(self, messages: Sequence[Message]) -> None:
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
        raise QueueSendFailed(f"{len(entries)} {self.noun}(s) could not be queued")
