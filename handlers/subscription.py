"""GET /subscription/{id}"""

from datetime import timedelta

from aws_lambda_powertools.metrics import MetricUnit

from common import clock, settings
from common.observability import logger, metrics
from domain import subscription_view
from handlers import http, representations
from handlers.schemas import OpaqueIdPath
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    subscription_id = http.validate(OpaqueIdPath, {"id": http.path_parameter(event, "id")}).id
    logger.append_keys(subscription_id=subscription_id)
    view = subscription_view.view(
        SqlAlchemyUnitOfWork(),
        subscription_id,
        clock.now(),
        timedelta(days=settings.get().billing_retry_days),
    )
    logger.info("subscription read", status_id=view.status_id, unpaid=len(view.unpaid))
    metrics.add_metric(name="SubscriptionRead", unit=MetricUnit.Count, value=1)
    return http.Response(200, representations.subscription(view))
