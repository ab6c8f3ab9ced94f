"""GET /clubs"""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import catalog
from handlers import http, representations
from handlers.schemas import ClubsQuery
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    query = http.query(event, ClubsQuery)
    clubs = catalog.list_clubs(SqlAlchemyUnitOfWork(), clock.now(), query.status)
    logger.info("clubs listed", status=query.status, count=len(clubs))
    metrics.add_metric(name="ClubsListed", unit=MetricUnit.Count, value=1)
    return http.Response(200, representations.club_list(clubs))
