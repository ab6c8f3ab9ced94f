"""The promo announcer (EventBridge, every minute): queue the audience of each promo that
has started and is not yet announced, however it was inserted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from adapters.promo_notifier import notifier
from adapters.promo_queue import InlineQueue, ParallelSender, SqsAnnouncementQueue
from common import clock, settings
from common.observability import logger, metrics
from domain import promo_notifications
from domain.promo_model import Announcement
from repositories.unit_of_work import SqlAlchemyUnitOfWork

# SendMessageBatch calls in flight at once.
SENDERS = 8


def queue() -> SqsAnnouncementQueue | InlineQueue:
    config = settings.get()
    if config.promo_queue_url:
        return SqsAnnouncementQueue(config.promo_queue_url)
    # Locally there is no SQS: each message is delivered at once, as the worker would.
    return InlineQueue(_deliver_locally)


def _deliver_locally(message: Announcement) -> None:
    delivered = promo_notifications.deliver(
        SqlAlchemyUnitOfWork(),
        notifier(),
        message,
        clock.now,
        settings.get().promo_notification_lease_seconds,
    )
    logger.info("promo notifications sent", promo_id=message.promo_id, sent=delivered.sent)


def run() -> list[promo_notifications.Announced]:
    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        sender = queue()
        if isinstance(sender, SqsAnnouncementQueue):
            sender = ParallelSender(sender, pool, SENDERS)
        announced = promo_notifications.announce(SqlAlchemyUnitOfWork(), sender, clock.now())
    for promo in announced:
        logger.info(
            "promo announced",
            promo_id=promo.promo_id,
            customers=promo.customers,
            messages=promo.messages,
        )
        metrics.add_metric(name="PromoAnnounced", unit=MetricUnit.Count, value=1)
    return announced


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    announced = run()
    return {"announced": [a.promo_id for a in announced]}
