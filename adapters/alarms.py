"""Money anomalies as logs and metrics: the CloudWatch alarms watch these metrics.

`install()` registers the listener once per container; every handler on the money path
calls it at import. Log lines name ids and periods, never a customer.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from common.observability import logger, metrics
from domain import anomalies


def _alarm(anomaly: anomalies.Anomaly) -> None:
    logger.error(
        "charge anomaly recorded for review",
        kind=anomaly.kind.value,
        subscription_id=anomaly.subscription_id,
        period=anomaly.period,
        request_id=anomaly.request_id,
        paid_request_id=anomaly.paid_request_id,
        charge_id=anomaly.charge_id,
    )
    metrics.add_metric(name=anomalies.METRIC[anomaly.kind], unit=MetricUnit.Count, value=1)


def install() -> None:
    if _alarm not in anomalies.listeners:
        anomalies.listeners.append(_alarm)
