"""The billing run's SQS queue: messages sent in batches of ten (SendMessageBatch's limit).

A batch that cannot be queued raises QueueSendFailed; the run's next tick sends it again
from its checkpoint."""

from __future__ import annotations

from adapters.sqs_batches import BATCH_SIZE, QueueSendFailed, SqsBatchQueue

__all__ = ["BATCH_SIZE", "QueueSendFailed", "SqsBillingQueue"]


class SqsBillingQueue(SqsBatchQueue):
    noun = "billing message"
