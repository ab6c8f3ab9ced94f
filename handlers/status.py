"""POST /subscription/{id}/status/"""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import subscriptions
from domain.model import SubscriptionStatus, status_name
from handlers import http
from handlers.schemas import OpaqueIdPath, StatusChangeBody
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    subscription_id = http.validate(OpaqueIdPath, {"id": http.path_parameter(event, "id")}).id
    logger.append_keys(subscription_id=subscription_id)
    request = http.body(event, StatusChangeBody)
    written = subscriptions.change_status(
        SqlAlchemyUnitOfWork(),
        subscription_id,
        request.status(),
        clock.now(),
        effect_date=request.effect_date,
        interval_days=request.interval,
        details=request.details,
    )
    logger.info(
        "status changed",
        status=request.status().name,
        rows_written=len(written),
    )
    metrics.add_metric(name="StatusChanged", unit=MetricUnit.Count, value=1)
    return http.Response(
        200,
        [
            {
                "id": row.id,
                "subscription_id": row.subscription_id,
                "status_id": int(row.status_id),
                "status": status_name(SubscriptionStatus, row.status_id),
                "effect_date": row.effect_date.isoformat(),
                "create_date": row.create_date.isoformat(),
                "details": row.details,
            }
            for row in written
        ],
    )
