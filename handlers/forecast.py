"""GET /billing/forecast: what the daily run at an instant will do; and, on its schedule,
the forecast of the next run computed ahead and stored (the endpoint then pages it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.metrics import MetricUnit

from common import clock, settings
from common.observability import logger, metrics
from domain import cancellation_breaker, forecast, forecast_runs
from handlers import http
from handlers.schemas import ForecastQuery
from repositories.unit_of_work import SqlAlchemyUnitOfWork


def _windows() -> tuple[timedelta, timedelta, cancellation_breaker.Breaker]:
    """The run's settings the forecast decides with: its windows and its breaker."""
    config = settings.get()
    return (
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
        cancellation_breaker.Breaker.configured(config),
    )


@http.endpoint
def api(event: dict) -> http.Response:
    query = http.query(event, ForecastQuery)
    at = query.at or forecast.next_run(clock.now())
    found = forecast_runs.answer(
        SqlAlchemyUnitOfWork(),
        SqlAlchemyUnitOfWork(),
        at,
        query.club_id,
        query.after,
        query.limit,
        *_windows(),
    )
    logger.info(
        "billing forecast answered",
        at=found["at"],
        source=found["source"],
        details=len(found["details"]),
    )
    metrics.add_metric(name="ForecastAnswered", unit=MetricUnit.Count, value=1)
    after = found["next_after"]
    headers = {"X-Next-After": quote(after, safe="")} if after else {}
    return http.Response(200, found, headers)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def prepare(event: dict[str, Any], context: Any) -> dict[str, Any]:
    upcoming = forecast_runs.prepare(
        SqlAlchemyUnitOfWork(), SqlAlchemyUnitOfWork(), clock.now(), *_windows()
    )
    logger.info("billing forecast stored", at=upcoming.at.isoformat(), lines=len(upcoming.lines))
    metrics.add_metric(name="ForecastStored", unit=MetricUnit.Count, value=len(upcoming.lines))
    return {"at": upcoming.at.isoformat(), "lines": len(upcoming.lines)}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("source") == "aws.events":
        return prepare(event, context)
    return api(event, context)
