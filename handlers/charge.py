"""POST /subscription/{id}/charge/{request_id}"""

from datetime import timedelta
from functools import lru_cache

import orjson
from aws_lambda_powertools.metrics import MetricUnit

from adapters import alarms, secrets
from adapters.ecommerce_client import HttpEcommerce
from common import clock, settings
from common.observability import logger, metrics
from domain import charges, errors
from handlers import http
from handlers.schemas import ChargePath
from repositories.unit_of_work import SqlAlchemyUnitOfWork

alarms.install()


@lru_cache(maxsize=1)
def platform() -> HttpEcommerce:
    """One client, and one connection pool, per warm container."""
    config = settings.get()
    return HttpEcommerce(
        config.ecomm_base_url,
        config.ecomm_api_key,
        lambda: secrets.ecomm_api_secret(config),
        config.ecomm_timeout_seconds,
        connect_timeout_seconds=config.ecomm_connect_timeout_seconds,
    )


def _recorded_body(text: str | None):
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    path = http.validate(
        ChargePath,
        {
            "id": http.path_parameter(event, "id"),
            "request_id": http.path_parameter(event, "request_id"),
        },
    )
    logger.append_keys(subscription_id=path.id, request_id=path.request_id)
    try:
        result = charges.charge(
            SqlAlchemyUnitOfWork(),
            platform(),
            path.id,
            path.request_id,
            clock.now,
            timedelta(seconds=settings.get().charge_pending_timeout_seconds),
        )
    except errors.PlatformError as exc:
        # The platform's body stays out of the logs (it may name the customer).
        data = {k: v for k, v in exc.data.items() if k != "platform_response"}
        logger.warning("charge failed at the platform", code=exc.code, **data)
        metrics.add_metric(name="ChargeFailed", unit=MetricUnit.Count, value=1)
        # The PlatformFailureAlarm's metric (serverless.yml): 5xx, unreachable, timeout,
        # refused credentials or throttling.
        metrics.add_metric(name="PlatformFailure", unit=MetricUnit.Count, value=1)
        raise
    charge = result.charge
    if result.replayed:
        logger.info("charge replayed", period=charge.period, sent_request_id=charge.request_id)
        metrics.add_metric(name="ChargeReplayed", unit=MetricUnit.Count, value=1)
        return http.Response(
            200,
            {
                **charges.describe(charge),
                "replayed": True,
                "platform_response": _recorded_body(charge.platform_body),
            },
        )
    answer = result.answer
    placed = 200 <= answer.status < 300
    logger.info(
        "charge placed" if placed else "charge refused by the platform",
        period=charge.period,
        sent_request_id=charge.request_id,
        attempt=charge.attempts,
        platform_status=answer.status,
    )
    metrics.add_metric(
        name="ChargePlaced" if placed else "ChargeFailed", unit=MetricUnit.Count, value=1
    )
    if answer.status >= 500:
        metrics.add_metric(name="PlatformFailure", unit=MetricUnit.Count, value=1)
    # The platform's answer is relayed as it came; a body that is not JSON is wrapped.
    body = answer.json if answer.is_json else {"platform_response": answer.text}
    return http.Response(answer.status, body)
