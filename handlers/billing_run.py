"""The scheduled billing run (EventBridge, daily): one SQS message per subscription due.

Streams the eligible subscriptions and queues what their periods need (charge, cancel,
abandon), ten messages per SendMessageBatch; `handlers/billing_charge.py` carries them
out. Running it twice the same day is harmless: the ledger keeps each period once. The
cancellations it is about to cause are counted first: above BILLING_MAX_CANCELLATIONS
none is queued, the metric BillingCancellationsHeld (alarmed on) says how many were held,
and `make release-cancellations` releases them.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from adapters.billing_queue import BATCH_SIZE, SqsBillingQueue
from common import clock, settings
from common.observability import logger, metrics
from domain import billing
from repositories.unit_of_work import SqlAlchemyUnitOfWork

SENDERS = 8


def breaker() -> billing.Breaker:
    config = settings.get()
    return billing.Breaker(config.billing_max_cancellations, config.billing_max_cancellations_floor)


def queue_due(queue: SqsBillingQueue, senders: int = SENDERS) -> Counter[str]:
    """Queue every due subscription; several SendMessageBatch calls are in flight at once
    (a million subscriptions are 100,000 calls), but never more than a few batches are
    held in memory."""
    summary = billing.RunSummary()
    counts = summary.counts
    config = settings.get()
    in_flight: deque[Future[None]] = deque()
    batch: list[billing.BillingMessage] = []
    with ThreadPoolExecutor(max_workers=senders) as pool:

        def send(messages: list[billing.BillingMessage]) -> None:
            in_flight.append(pool.submit(queue.send, messages))
            counts["queued"] += len(messages)
            while len(in_flight) >= 2 * senders:
                in_flight.popleft().result()

        messages = billing.produce(
            SqlAlchemyUnitOfWork(),
            clock.now(),
            breaker(),
            summary,
            retry_window=timedelta(days=config.billing_retry_days),
            pending_timeout=timedelta(seconds=config.charge_pending_timeout_seconds),
        )
        for message in messages:
            # `queued` is counted by the producer; the sender counts sends.
            counts["queued"] -= 1
            batch.append(message)
            if len(batch) == BATCH_SIZE:
                send(batch)
                batch = []
        if batch:
            send(batch)
        while in_flight:
            in_flight.popleft().result()
    if summary.held:
        logger.error(
            "billing cancellations held by the breaker",
            held=len(summary.held),
            limit=summary.limit,
            due=summary.due,
        )
    metrics.add_metric(
        name="BillingCancellationsHeld", unit=MetricUnit.Count, value=len(summary.held)
    )
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
