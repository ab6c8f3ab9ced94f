"""The scheduled billing run (EventBridge, daily): one SQS message per subscription due.

Streams the eligible subscriptions whose current period has no successful charge yet and
queues one message each, ten per SendMessageBatch; `handlers/billing_charge.py` charges
them. Running it twice the same day is harmless: the ledger keeps each period once.
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
from domain import billing, forecast
from repositories.unit_of_work import SqlAlchemyUnitOfWork

SENDERS = 8


def queue_due(queue: SqsBillingQueue, senders: int = SENDERS) -> Counter[str]:
    """Queue every due subscription; several SendMessageBatch calls are in flight at once
    (a million subscriptions are 100,000 calls), but never more than a few batches are
    held in memory."""
    counts: Counter[str] = Counter()
    in_flight: deque[Future[None]] = deque()
    batch: list[billing.BillingMessage] = []
    with ThreadPoolExecutor(max_workers=senders) as pool:

        def send(messages: list[billing.BillingMessage]) -> None:
            in_flight.append(pool.submit(queue.send, messages))
            counts["queued"] += len(messages)
            while len(in_flight) >= 2 * senders:
                in_flight.popleft().result()

        for planned in billing.plan(SqlAlchemyUnitOfWork(), clock.now()):
            if planned.message is None:
                counts[str(planned.settled_as)] += 1
                continue
            batch.append(planned.message)
            if len(batch) == BATCH_SIZE:
                send(batch)
                batch = []
        if batch:
            send(batch)
        while in_flight:
            in_flight.popleft().result()
    return counts


def record_forecast(config: settings.Settings) -> None:
    """Compare the previous run's forecast with what its workers did, then store this
    run's own forecast unless one was stored for it (the forecast schedule does that)."""
    now = clock.now()
    run_at = forecast.last_run(now)
    comparison = forecast.compare(SqlAlchemyUnitOfWork(), run_at - timedelta(days=1), run_at, now)
    if comparison.get("forecast") is not None:
        logger.info("billing forecast compared", **comparison)
    forecast.before_run(
        SqlAlchemyUnitOfWork(),
        SqlAlchemyUnitOfWork(),
        run_at,
        now,
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
    )


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    config = settings.get()
    if not config.billing_queue_url:
        raise RuntimeError("BILLING_QUEUE_URL is not configured")
    record_forecast(config)
    counts = queue_due(SqsBillingQueue(config.billing_queue_url))
    logger.info("billing run queued", **counts)
    metrics.add_metric(name="BillingQueued", unit=MetricUnit.Count, value=counts["queued"])
    return dict(counts)
