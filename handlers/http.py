"""The HTTP edge shared by every handler: reading API Gateway events, the one map from
business errors to statuses, and the JSON error envelope."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError

from common import settings
from common.observability import logger, metrics
from domain import errors

MAX_BODY_BYTES = 64 * 1024

ERROR_STATUS: dict[type[errors.DomainError], int] = {
    errors.ClubNotFound: 404,
    errors.SubscriptionNotFound: 404,
    errors.ClubNotOpen: 409,
    errors.AlreadySubscribed: 409,
    errors.SubscriptionNotEligible: 409,
    errors.ChargeInProgress: 409,
    errors.ChargeAbandoned: 409,
    errors.InvalidWebhook: 400,
    errors.WebhookNotConfigured: 503,
    errors.PlatformFailed: 502,
    errors.PlatformUnreachable: 502,
    errors.PlatformTimeout: 504,
    errors.PlatformNotConfigured: 503,
    # Flash promos.
    errors.PromoNotFound: 404,
    errors.CustomerProfileNotFound: 404,
    errors.ReservationNotFound: 404,
    errors.PromoNotRunning: 409,
    errors.PromoUnavailable: 409,
    errors.AlreadyPurchased: 409,
    errors.PurchaseInProgress: 409,
    errors.ReservationExpired: 410,
    errors.NotEligible: 422,
    # Club changes.
    errors.SubscriptionNotActive: 409,
    errors.SameClub: 409,
    errors.PeriodAlreadyBilled: 409,
    errors.ClubChangePending: 409,
    errors.ClubChangeNotFound: 404,
    errors.StatusChangeScheduled: 409,
    errors.RequestIdInUse: 409,
    errors.PlatformRefused: 502,
    # The operators' desk (only its CLI raises it).
    errors.NothingToDo: 409,
}

Model = TypeVar("Model", bound=BaseModel)


class InvalidRequest(Exception):
    """The request itself is wrong: 400 unless a status says otherwise."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass
class Response:
    status: int
    body: Any  # JSON-encodable, or bytes already encoded as JSON
    headers: dict[str, str] = field(default_factory=dict)

    def to_proxy(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {
                "Content-Type": "application/json",
                "Access-Control-Allow-Origin": settings.get().cors_allow_origin,
                **self.headers,
            },
            "body": (
                self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)
            ).decode(),
        }


def error_response(status: int, code: str, message: str, **data: object) -> Response:
    return Response(status, {"error": {"code": code, "message": message, **data}})


def path_parameter(event: dict[str, Any], name: str) -> str | None:
    params = event.get("pathParameters") or {}
    value = params.get(name) if isinstance(params, dict) else None
    return value if isinstance(value, str) else None


def query(event: dict[str, Any], model: type[Model]) -> Model:
    params = event.get("queryStringParameters") or {}
    return validate(model, params if isinstance(params, dict) else {})


def body(event: dict[str, Any], model: type[Model]) -> Model:
    raw = event.get("body")
    if raw is None or raw == "":
        raise InvalidRequest("a JSON request body is required")
    if not isinstance(raw, str):
        raise InvalidRequest("the request body must be JSON text")
    if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:
        raise _too_large()
    data: bytes | str = raw
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("the request body is not valid base64") from None
    if len(data) > MAX_BODY_BYTES:
        raise _too_large()
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return validate(model, parsed)


def _too_large() -> InvalidRequest:
    return InvalidRequest(
        f"the request body is larger than {MAX_BODY_BYTES // 1024} KB", 413, "payload_too_large"
    )


def validate(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Messages name the field and the rule, never echo the input (it may be huge or private).
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in err["loc"]) or "body"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise InvalidRequest("; ".join(problems)) from None


def parse(parser: Callable[[str | None], Any], raw: str | None) -> Any:
    """Apply a plain path-parameter parser, turning its ValueError into a 400."""
    try:
        return parser(raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def authorized(event: dict[str, Any]) -> bool:
    """Locally, API_KEY stands in for API Gateway's usage-plan keys; unset, nothing is asked."""
    accepted = settings.get().api_keys()
    if not accepted:
        return True
    headers = event.get("headers")
    given = next(
        (
            value
            for name, value in (headers.items() if isinstance(headers, dict) else ())
            if isinstance(name, str) and name.lower() == "x-api-key" and isinstance(value, str)
        ),
        "",
    ).encode(errors="replace")
    # Every key is compared, in constant time, so the timing tells nothing about any of them.
    return sum(hmac.compare_digest(given, key) for key in accepted) > 0


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def endpoint(
    fn: Callable[[dict[str, Any]], Response] | None = None, *, api_key: bool = True
) -> Any:
    """Wrap a handler body: correlation id, metrics flush, and every error as an envelope.

    `api_key=False` is for callers that authenticate otherwise (the platform's signed
    webhooks), which hold no API key.
    """
    if fn is None:
        return functools.partial(endpoint, api_key=api_key)

    @functools.wraps(fn)
    def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not isinstance(event, dict):
            return error_response(400, "invalid_request", "not an API Gateway event").to_proxy()
        if api_key and not authorized(event):
            logger.info("request rejected", status=403, reason="missing or wrong api key")
            return error_response(
                403, "forbidden", "a valid x-api-key header is required"
            ).to_proxy()
        try:
            response = fn(event)
        except InvalidRequest as exc:
            logger.info("request rejected", status=exc.status, reason=exc.message)
            response = error_response(exc.status, exc.code, exc.message)
        except errors.DomainError as exc:
            status = getattr(exc, "status", None) or ERROR_STATUS.get(type(exc), 409)
            logged = {k: v for k, v in exc.data.items() if k != "platform_response"}
            logger.info("request refused", status=status, code=exc.code, **logged)
            response = error_response(status, exc.code, exc.message, **exc.data)
            response.headers.update(getattr(exc, "headers", {}))
        except OperationalError:
            logger.exception("database unavailable")
            response = error_response(
                503, "database_unavailable", "the database is unavailable, retry later"
            )
        except settings.SettingsError:
            # Where the database is cannot be worked out (a secret unreadable or malformed):
            # ours to fix, and the message names the source, never a value.
            logger.exception("database settings unusable")
            response = error_response(
                503, "database_unavailable", "the database is not configured, retry later"
            )
        except Exception:
            logger.exception("unexpected error")
            response = error_response(500, "internal_error", "an unexpected error occurred")
        return response.to_proxy()

    traced = logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
    )(run)
    return metrics.log_metrics(traced)
