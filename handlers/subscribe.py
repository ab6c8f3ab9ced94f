"""POST /club/{id}/subscribe/"""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import subscriptions
from handlers import http
from handlers.schemas import SubscribeBody, club_id
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    club = http.parse(club_id, http.path_parameter(event, "id"))
    logger.append_keys(club_id=club)
    request = http.body(event, SubscribeBody)
    subscription = subscriptions.subscribe(
        SqlAlchemyUnitOfWork(), club, request.customer_id, clock.now()
    )
    logger.info("subscription created", subscription_id=subscription.id)
    metrics.add_metric(name="SubscriptionCreated", unit=MetricUnit.Count, value=1)
    return http.Response(
        201,
        {
            "id": subscription.id,
            "club_id": subscription.club_id,
            "customer_id": subscription.customer_id,
            "status": "ACTIVE",
            "status_id": int(subscription.status_id),
            "create_date": subscription.create_date.isoformat(),
        },
    )
