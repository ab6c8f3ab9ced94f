"""The scheduled billing run (EventBridge, daily): one SQS message per subscription due.

Streams the eligible subscriptions whose current period has no successful charge yet and
queues one message each, ten per SendMessageBatch; `handlers/billing_charge.py` charges
them. Running it twice the same day is harmless: the ledger keeps each period once.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from adapters.billing_queue import BATCH_SIZE, SqsBillingQueue
from common import clock, settings
from common.observability import logger, metrics
from domain import audit, billing, club_change_model, club_changes
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

        now = clock.now()
        # Club-change hook: record changes whose instant passed, cancel interfered ones.
        sweep_club_changes(now)
        for planned in billing.plan(SqlAlchemyUnitOfWork(), now):
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


def sweep_club_changes(now) -> club_change_model.SweepReport:
    """The billing run's pass over club changes (domain/club_changes.py), logged."""
    report = club_changes.sweep(SqlAlchemyUnitOfWork(), now, audit.BILLING_RUN)
    for change in report.applied:
        logger.info(
            "club change applied",
            club_change_id=change.id,
            subscription_id=change.subscription_id,
            target_subscription_id=change.target_subscription_id,
            abandoned_periods=list(change.abandoned_periods),
        )
    for change in report.cancelled:
        logger.info(
            "club change cancelled",
            club_change_id=change.id,
            subscription_id=change.subscription_id,
            target_subscription_id=change.target_subscription_id,
            reason=change.cancel_reason,
        )
    metrics.add_metric(name="ClubChangeApplied", unit=MetricUnit.Count, value=len(report.applied))
    metrics.add_metric(
        name="ClubChangeCancelled", unit=MetricUnit.Count, value=len(report.cancelled)
    )
    return report


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
