"""POST /subscription/{id}/status/, and its deprecated twin POST /subscription/update/{id}
(the challenge's starting repository's route, whose body may also name the subscription)."""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import subscriptions
from domain.model import SubscriptionStatus, status_name
from handlers import http
from handlers.schemas import LegacyStatusChangeBody, OpaqueIdPath, StatusChangeBody
from repositories.unit_of_work import SqlAlchemyUnitOfWork

LEGACY_RESOURCE = "/subscription/update/"


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    subscription_id = http.validate(OpaqueIdPath, {"id": http.path_parameter(event, "id")}).id
    logger.append_keys(subscription_id=subscription_id)
    if str(event.get("resource") or "").startswith(LEGACY_RESOURCE):
        request = http.body(event, LegacyStatusChangeBody)
        if request.names_another_subscription(subscription_id):
            raise http.InvalidRequest("subscription_id in the body must equal the id in the path")
    else:
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
