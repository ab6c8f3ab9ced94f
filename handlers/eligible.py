"""GET /subscription/eligible"""

from urllib.parse import quote

import orjson
from aws_lambda_powertools.metrics import MetricUnit

from common import clock, settings
from common.observability import logger, metrics
from domain import audit, club_changes, subscriptions
from handlers import http
from handlers.schemas import EligibleQuery
from repositories.unit_of_work import SqlAlchemyUnitOfWork

PAGE_HINT = "?limit=10000, then ?limit=10000&after=<last id of the previous page>"


@http.endpoint
def lambda_handler(event: dict) -> http.Response:
    page = http.query(event, EligibleQuery)
    now = clock.now()
    if page.after is None:
        # Club-change hook: with the absorber (first page), cancel pending club changes
        # whose subscriptions got a status row outside the API.
        _cancel_interfered_club_changes(now)
    ids = subscriptions.eligible_ids(SqlAlchemyUnitOfWork(), now, page.after, page.limit)
    logger.info("eligible listed", count=len(ids), limit=page.limit, after=page.after)
    metrics.add_metric(name="EligibleListed", unit=MetricUnit.Count, value=len(ids))
    # Encoded once: the size check and the answer share it.
    body = orjson.dumps(ids)
    too_large = _too_large(ids, body, now, paged=page.limit is not None)
    if too_large is not None:
        return too_large
    headers = {}
    if page.limit is not None and len(ids) == page.limit:
        # Percent-encoded: the id itself for ordinary ids, and a valid header for any other.
        headers["X-Next-After"] = quote(ids[-1], safe="")
    return http.Response(200, body, headers)


def _cancel_interfered_club_changes(now) -> None:
    for change in club_changes.cancel_interfered(SqlAlchemyUnitOfWork(), now, audit.ABSORBER):
        logger.info(
            "club change cancelled",
            club_change_id=change.id,
            subscription_id=change.subscription_id,
            target_subscription_id=change.target_subscription_id,
            reason=change.cancel_reason,
        )
        metrics.add_metric(name="ClubChangeCancelled", unit=MetricUnit.Count, value=1)


def _too_large(ids: list[str], body: bytes, now, paged: bool) -> http.Response | None:
    """The answer for a list that API Gateway could not carry, else None."""
    config = settings.get()
    # The proxy response carries the body as a JSON string, where every quote and backslash
    # is escaped: at most twice as long, so most answers need no count.
    limit = config.eligible_max_response_bytes
    if 2 * len(body) <= limit or len(body) + body.count(b'"') + body.count(b"\\") <= limit:
        return None
    if paged:
        # Only ids far longer than uuids get here: a smaller page always fits.
        raise http.InvalidRequest(
            f"a page of {len(ids)} ids is larger than a response can carry; use a smaller limit",
            413,
            "response_too_large",
        )
    if config.eligible_export_bucket:
        from adapters import eligible_export

        url = eligible_export.publish(config.eligible_export_bucket, body, now)
        logger.info("eligible exported", count=len(ids), size=len(body))
        return http.Response(
            303,
            {"count": len(ids), "location": url, "expires_in": eligible_export.URL_SECONDS},
            {"Location": url},
        )
    logger.info("eligible too large", count=len(ids), size=len(body))
    raise http.InvalidRequest(
        f"the list of {len(ids)} eligible ids is larger than a response can carry;"
        f" fetch it in pages: {PAGE_HINT}",
        413,
        "response_too_large",
    )
