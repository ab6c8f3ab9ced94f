"""DELETE /subscription/{id}/club-change/ - cancel the subscription's pending club change."""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import club_change_model, club_changes
from handlers import http
from handlers.schemas import OpaqueIdPath
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    subscription_id = http.validate(OpaqueIdPath, {"id": http.path_parameter(event, "id")}).id
    logger.append_keys(subscription_id=subscription_id)
    now = clock.now()
    change = club_changes.cancel_change(SqlAlchemyUnitOfWork(), subscription_id, now)
    logger.info(
        "club change cancelled",
        club_change_id=change.id,
        target_subscription_id=change.target_subscription_id,
        target_club_id=change.target_club_id,
        reason=change.cancel_reason,
    )
    metrics.add_metric(name="ClubChangeCancelled", unit=MetricUnit.Count, value=1)
    return http.Response(200, club_change_model.describe(change, now))
