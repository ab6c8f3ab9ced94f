"""GET /club/{id}"""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import catalog
from handlers import http, representations
from handlers.schemas import club_id
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    club = http.parse(club_id, http.path_parameter(event, "id"))
    logger.append_keys(club_id=club)
    detail = catalog.club(SqlAlchemyUnitOfWork(), club, clock.now())
    logger.info("club read", status_id=detail.status_id)
    metrics.add_metric(name="ClubRead", unit=MetricUnit.Count, value=1)
    return http.Response(200, representations.club(detail))
