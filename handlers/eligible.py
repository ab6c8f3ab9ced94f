"""GET /subscription/eligible"""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import subscriptions
from handlers import http
from handlers.schemas import EligibleQuery
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    page = http.query(event, EligibleQuery)
    ids = subscriptions.eligible_ids(SqlAlchemyUnitOfWork(), clock.now(), page.after, page.limit)
    logger.info("eligible listed", count=len(ids), limit=page.limit, after=page.after)
    metrics.add_metric(name="EligibleListed", unit=MetricUnit.Count, value=len(ids))
    headers = {}
    if page.limit is not None and len(ids) == page.limit:
        headers["X-Next-After"] = ids[-1]
    return http.Response(200, ids, headers)
