"""The promo notification worker (SQS): one notification per (promo, customer), sent once.

A message whose sends failed is reported as a batch item failure; SQS delivers it again
and only the customers not yet told are sent to.
"""

from __future__ import annotations

from typing import Any

import orjson
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from adapters.promo_notifier import notifier
from common import clock, settings
from common.observability import logger, metrics
from domain import promo_notifications
from domain.promo_model import Announcement
from repositories.unit_of_work import SqlAlchemyUnitOfWork

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver(message: Announcement) -> promo_notifications.Delivered:
    delivered = promo_notifications.deliver(
        SqlAlchemyUnitOfWork(),
        notifier(),
        message,
        clock.now,
        settings.get().promo_notification_lease_seconds,
    )
    logger.info(
        "promo notifications sent" if delivered.promo_running else "promo no longer running",
        promo_id=message.promo_id,
        sent=delivered.sent,
        skipped=delivered.skipped,
    )
    metrics.add_metric(name="PromoNotified", unit=MetricUnit.Count, value=delivered.sent)
    return delivered


def record_handler(record: SQSRecord) -> int:
    try:
        message = Announcement.from_dict(orjson.loads(record.body))
    except (orjson.JSONDecodeError, ValueError, AttributeError):
        # Retrying cannot fix it: logged (without its content) and dropped.
        logger.error("promo announcement unreadable, dropped", message_id=record.message_id)
        return 0
    try:
        return deliver(message).sent
    except Exception as exc:
        logger.warning(
            "promo notifications failed, SQS will retry",
            promo_id=message.promo_id,
            error=type(exc).__name__,
            receive_count=record.attributes.approximate_receive_count,
        )
        raise


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
