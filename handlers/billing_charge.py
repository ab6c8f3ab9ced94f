"""The billing run's worker (SQS, batches of ten): charge or end each subscription.

A message whose charge is in progress elsewhere, or whose platform call failed (5xx,
unreachable, timeout), is reported as a batch item failure: SQS delivers it again after
the visibility timeout, and after maxReceiveCount moves it to the dead-letter queue.
Everything else is processed: charged, already charged, not eligible, refused by the
platform (a 4xx, retried by later runs inside the retry window) or cancelled.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from adapters import alarms
from common import clock, settings
from common.observability import logger, metrics
from domain import billing
from handlers.charge import platform
from repositories.unit_of_work import SqlAlchemyUnitOfWork

alarms.install()

# A batch whose every record failed is answered like any other (all reported), not raised.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

METRIC = {
    billing.Outcome.CHARGED: "ChargePlaced",
    billing.Outcome.ALREADY_CHARGED: "ChargeReplayed",
    billing.Outcome.FAILED: "ChargeFailed",
    billing.Outcome.SKIPPED: "BillingSkipped",
    billing.Outcome.CANCELLED: "BillingCancelled",
    billing.Outcome.PLATFORM_ERROR: "ChargePlatformError",
    billing.Outcome.ABANDONED: "BillingAbandoned",
}


def settle_one(message: billing.BillingMessage) -> billing.Outcome:
    config = settings.get()
    return billing.settle(
        SqlAlchemyUnitOfWork(),
        platform(),
        message.subscription_id,
        clock.now,
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
        period=message.period,
        step=message.step,
    )


def record_handler(record: SQSRecord) -> str:
    message = billing.BillingMessage.from_dict(orjson.loads(record.body))
    try:
        outcome = settle_one(message)
    except Exception as exc:
        logger.warning(
            "billing message failed, SQS will retry it",
            subscription_id=message.subscription_id,
            period=message.period,
            error=type(exc).__name__,
            receive_count=record.attributes.approximate_receive_count,
        )
        raise
    logger.info(
        "billing message settled",
        subscription_id=message.subscription_id,
        period=message.period,
        step=message.step.value,
        outcome=outcome.value,
    )
    metrics.add_metric(name=METRIC[outcome], unit=MetricUnit.Count, value=1)
    return outcome.value


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
