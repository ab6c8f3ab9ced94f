"""POST /subscription/{id}/club-change/ - change club at the next period (or now), or preview it."""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import club_change_model, club_changes
from handlers import http
from handlers.schemas import ClubChangeBody, OpaqueIdPath
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    subscription_id = http.validate(OpaqueIdPath, {"id": http.path_parameter(event, "id")}).id
    logger.append_keys(subscription_id=subscription_id)
    request = http.body(event, ClubChangeBody)
    now = clock.now()
    outcome = club_changes.request_change(
        SqlAlchemyUnitOfWork(),
        club_change_model.ChangeRequest(
            subscription_id,
            request.club_id,
            club_change_model.When(request.when),
            request.preview,
            request.replace,
        ),
        now,
    )
    change = outcome.change
    if outcome.preview:
        name, status, phrase = "ClubChangePreviewed", 200, "club change previewed"
    elif outcome.created:
        name, status, phrase = "ClubChangeScheduled", 201, "club change scheduled"
    else:
        name, status, phrase = "ClubChangeReplayed", 200, "club change replayed"
    logger.info(
        phrase,
        club_change_id=None if outcome.preview else change.id,
        target_subscription_id=change.target_subscription_id,
        club_id=change.club_id,
        target_club_id=change.target_club_id,
        when=change.when.value,
        effective_at=change.effective_at.isoformat(),
        replaced=outcome.replaced.id if outcome.replaced else None,
    )
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if outcome.replaced is not None and not outcome.preview:
        metrics.add_metric(name="ClubChangeCancelled", unit=MetricUnit.Count, value=1)
    return http.Response(status, club_change_model.describe_outcome(outcome, now))
