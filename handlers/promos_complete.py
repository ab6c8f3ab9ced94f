"""POST /promos/{id}/reservations/{reservation_id}/complete - buy the held unit"""

from datetime import timedelta

import orjson
from aws_lambda_powertools.metrics import MetricUnit

from adapters.promo_platform import platform
from common import clock, settings
from common.observability import logger, metrics
from domain import errors, promo_orders, promos
from handlers import http
from handlers.promo_schemas import ReservationPath, promo_id
from repositories.unit_of_work import SqlAlchemyUnitOfWork

CHARGE_HINT = "; the month stays chargeable, retry later"


def _recorded_body(text: str | None):
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    promo = http.parse(promo_id, http.path_parameter(event, "id"))
    path = http.validate(
        ReservationPath, {"reservation_id": http.path_parameter(event, "reservation_id")}
    )
    logger.append_keys(promo_id=promo, reservation_id=path.reservation_id)
    try:
        done = promo_orders.complete(
            SqlAlchemyUnitOfWork(),
            platform(),
            promo,
            path.reservation_id,
            clock.now,
            timedelta(seconds=settings.get().charge_pending_timeout_seconds),
        )
    except errors.PlatformError as exc:
        logger.warning("promo order failed at the platform", code=exc.code, **exc.data)
        metrics.add_metric(name="PromoOrderFailed", unit=MetricUnit.Count, value=1)
        # The shared platform errors speak of a chargeable month; here it is a reservation.
        message = exc.message.replace(CHARGE_HINT, "") + (
            "; the reservation is kept while the outcome is unknown, complete it again"
            if exc.sent
            else "; nothing was ordered, the reservation is held until it expires"
        )
        return http.error_response(
            http.ERROR_STATUS.get(type(exc), 502), exc.code, message, **exc.data
        )
    now = clock.now()
    body = {
        **promos.describe_reservation(done.reservation, now),
        "order": promo_orders.describe_order(done.order),
    }
    if done.answer is None:
        logger.info("promo order replayed", sent_request_id=done.order.request_id)
        return http.Response(200, {**body, "replayed": True})
    answer = done.answer
    logger.info(
        "promo sold" if done.sold else "promo order refused by the platform",
        sent_request_id=done.order.request_id,
        attempt=done.order.attempts,
        platform_status=answer.status,
    )
    metrics.add_metric(
        name="PromoSold" if done.sold else "PromoOrderRefused", unit=MetricUnit.Count, value=1
    )
    platform_response = answer.json if answer.is_json else answer.text
    if done.sold:
        return http.Response(200, {**body, "platform_response": platform_response})
    # The platform's refusal (a declined card...) with its status; the hold is the
    # customer's again until it expires.
    return http.error_response(
        answer.status,
        "order_refused",
        f"the e-commerce platform refused the order (HTTP {answer.status}); the reservation "
        f"is {body['state']} until {body['expires_at']}",
        platform_status=answer.status,
        platform_response=platform_response,
        reservation=body,
    )
