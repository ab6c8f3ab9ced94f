"""POST /promos/{id}/reservations - hold one unit for the customer for a minute"""

from datetime import timedelta

from aws_lambda_powertools.metrics import MetricUnit

from common import clock, settings
from common.observability import logger, metrics
from domain import promos
from handlers import http
from handlers.promo_schemas import ReserveBody, promo_id
from repositories.unit_of_work import SqlAlchemyUnitOfWork


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    promo = http.parse(promo_id, http.path_parameter(event, "id"))
    body = http.body(event, ReserveBody)
    logger.append_keys(promo_id=promo)
    now = clock.now()
    result = promos.reserve(
        SqlAlchemyUnitOfWork(),
        promo,
        body.customer_id,
        now,
        timedelta(seconds=settings.get().promo_hold_seconds),
    )
    reservation = result.reservation
    logger.info(
        "promo reserved" if result.created else "promo reservation repeated",
        reservation_id=reservation.id,
        unit=reservation.unit_no,
        expires_at=reservation.expires_at.isoformat(),
    )
    if result.created:
        metrics.add_metric(name="PromoReserved", unit=MetricUnit.Count, value=1)
    return http.Response(
        201 if result.created else 200, promos.describe_reservation(reservation, now)
    )
