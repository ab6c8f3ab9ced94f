"""GET /promos/eligible?customer_id= - the promos running now that this customer may take"""

from aws_lambda_powertools.metrics import MetricUnit

from common import clock
from common.observability import logger, metrics
from domain import promos
from handlers import http
from handlers.promo_schemas import PromoCustomerQuery
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    query = http.query(event, PromoCustomerQuery)
    found = promos.eligible(SqlAlchemyUnitOfWork(), query.customer_id, clock.now())
    logger.info("eligible promos listed", count=len(found))
    metrics.add_metric(name="PromosListed", unit=MetricUnit.Count, value=1)
    return http.Response(200, [promos.describe_eligible(promo) for promo in found])
