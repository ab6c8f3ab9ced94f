"""The billing run's worker (SQS, batches of ten): charge or end each subscription.

A message whose charge is in progress elsewhere, or whose platform call failed (5xx,
unreachable, timeout), is reported as a batch item failure: SQS delivers it again after
the visibility timeout, and after maxReceiveCount moves it to the dead-letter queue.
Everything else is processed: charged, already charged, not eligible, refused by the
platform (a 4xx, retried by later runs inside the retry window) or cancelled.

Before each record the worker checks the time left: when it could not finish one more
(a platform call at its connect and read timeouts, plus the database), the record is not
started and is handed back as a batch item failure, like every record after it, instead
of being cut off by the function's timeout with the whole batch.
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
from domain import billing, errors, settlement
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
    # The PlatformFailureAlarm's metric (serverless.yml).
    billing.Outcome.PLATFORM_ERROR: "PlatformFailure",
    billing.Outcome.ABANDONED: "BillingAbandoned",
}


def settle_one(message: billing.BillingMessage) -> billing.Outcome:
    config = settings.get()
    return settlement.settle_message(
        SqlAlchemyUnitOfWork(),
        platform(),
        message,
        clock.now,
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
    )


class NoTimeLeft(RuntimeError):
    """Not started: too little time left in this invocation; SQS delivers it again."""


def record_margin_ms(config: settings.Settings) -> int:
    """The time one record may take at worst: the platform call's connect and read
    timeouts, and the database's statement timeout for the writes around it."""
    platform_s = config.ecomm_connect_timeout_seconds + config.ecomm_timeout_seconds
    return int(platform_s * 1000) + config.db_statement_timeout_ms


def record_handler(record: SQSRecord, lambda_context: Any = None) -> str:
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        left = remaining()
        if left < record_margin_ms(settings.get()):
            logger.info(
                "billing message handed back: too little time left",
                message_id=record.message_id,
                remaining_ms=left,
            )
            metrics.add_metric(name="BillingHandedBack", unit=MetricUnit.Count, value=1)
            raise NoTimeLeft(f"{left} ms left")
    message = billing.BillingMessage.from_dict(orjson.loads(record.body))
    try:
        outcome = settle_one(message)
    except Exception as exc:
        if isinstance(exc, errors.PlatformError):
            metrics.add_metric(name="PlatformFailure", unit=MetricUnit.Count, value=1)
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
