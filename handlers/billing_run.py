"""The scheduled billing run (EventBridge, daily): one SQS message per subscription due.

Streams the eligible subscriptions whose current period has no successful charge yet and
queues one message each, ten per SendMessageBatch; `handlers/billing_charge.py` charges
them. Running it twice the same day is harmless: the ledger keeps each period once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from adapters.billing_queue import BATCH_SIZE, SqsBillingQueue
from common import clock, settings
from common.observability import logger, metrics
from domain import billing
from repositories.unit_of_work import SqlAlchemyUnitOfWork


def queue_due(queue: SqsBillingQueue) -> Counter[str]:
    counts: Counter[str] = Counter()
    batch: list[billing.BillingMessage] = []
    for planned in billing.plan(SqlAlchemyUnitOfWork(), clock.now()):
        if planned.message is None:
            counts[str(planned.settled_as)] += 1
            continue
        batch.append(planned.message)
        if len(batch) == BATCH_SIZE:
            queue.send(batch)
            counts["queued"] += len(batch)
            batch = []
    if batch:
        queue.send(batch)
        counts["queued"] += len(batch)
    return counts


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    config = settings.get()
    if not config.billing_queue_url:
        raise RuntimeError("BILLING_QUEUE_URL is not configured")
    counts = queue_due(SqsBillingQueue(config.billing_queue_url))
    logger.info("billing run queued", **counts)
    metrics.add_metric(name="BillingQueued", unit=MetricUnit.Count, value=counts["queued"])
    return dict(counts)
