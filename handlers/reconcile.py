"""The daily reconciliation (EventBridge): the platform's orders against the ledger.

Settles rows whose outcome is unknown by asking the platform about their order, and logs
the report (double charges, orders without a ledger row, ledger rows without an order,
rows left for review). The metrics ReconciliationFindings and DoubleCharge are
alarmed on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from adapters import alarms, secrets
from adapters.ecommerce_client import HttpEcommerce
from common import clock, settings
from common.observability import logger, metrics
from domain import reconciliation
from repositories.unit_of_work import SqlAlchemyUnitOfWork

alarms.install()


def platform() -> HttpEcommerce:
    config = settings.get()
    return HttpEcommerce(
        config.ecomm_base_url,
        config.ecomm_api_key,
        lambda: secrets.ecomm_api_secret(config),
        config.ecomm_timeout_seconds,
        lookup=config.ecomm_order_lookup,
    )


def run() -> reconciliation.Report:
    config = settings.get()
    return reconciliation.reconcile(
        SqlAlchemyUnitOfWork(),
        platform(),
        clock.now(),
        timedelta(seconds=config.charge_pending_timeout_seconds),
    )


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = run()
    findings = sum(len(getattr(report, name)) for name in report.SECTIONS[1:])
    logger.info(
        "reconciliation done",
        settled=len(report.settled),
        for_review=len(report.for_review),
        double_charges=len(report.double_charges),
        orders_without_ledger=len(report.orders_without_ledger),
        ledger_without_order=len(report.ledger_without_order),
        open_anomalies=len(report.open_anomalies),
        platform_listed_orders=report.listed,
    )
    metrics.add_metric(name="ReconciliationFindings", unit=MetricUnit.Count, value=findings)
    metrics.add_metric(
        name="ReconciliationSettled", unit=MetricUnit.Count, value=len(report.settled)
    )
    return report.to_dict()
