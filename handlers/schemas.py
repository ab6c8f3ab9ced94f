"""Shapes of paths, queries and bodies at the edge; the domain never re-validates them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from domain.model import SubscriptionStatus

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_INTERVAL_DAYS = 36_500
# 100,000 ids of 36 characters are about 4 MB of JSON: a page always fits API Gateway's 6 MB.
MAX_ELIGIBLE_PAGE = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER = re.compile(r"-?[0-9]{1,10}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,10}", re.ASCII)


def _printable(value: str) -> str:
    # PostgreSQL rejects NUL in text, and no id or detail needs a control character.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _iso_datetime(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date-time such as 2019-02-18T12:25:56.563000"
        ) from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            # 9999-12-31T23:00-05:00 is a valid string whose UTC instant is past year 9999.
            raise ValueError("must be between the years 1 and 9999 once converted to UTC") from None
    return parsed


def _whole_number_text(value: object) -> object:
    # Query strings are text: only plain digits are a number ("5.0", " 5", "+5", "5_0" are not).
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written in digits")
    return value


def _known_status(value: int) -> int:
    if value not in SubscriptionStatus._value2member_map_:
        raise ValueError("must be 1 (ACTIVE), 2 (CANCELLED) or 3 (PAUSED)")
    return value


OpaqueId = Annotated[
    StrictStr,
    Field(min_length=1, max_length=36, description="an opaque id: 1 to 36 characters"),
    AfterValidator(_printable),
]


def club_id(raw: str | None) -> int:
    """A club id from the path: a decimal integer that fits PostgreSQL's integer."""
    if raw is None or not _INTEGER.fullmatch(raw) or not INT32_MIN <= int(raw) <= INT32_MAX:
        raise ValueError("club id must be an integer between -2147483648 and 2147483647")
    return int(raw)


class Shape(BaseModel):
    """Every edge shape builds its validator on first use, not at import: a function pays
    only for the shapes it reads (cold start)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)


class SubscribeBody(Shape):
    customer_id: OpaqueId = Field(description="the customer's id in the e-commerce platform")


class StatusChangeBody(Shape):
    status_id: Annotated[StrictInt, AfterValidator(_known_status)] = Field(
        description="1 ACTIVE, 2 CANCELLED, 3 PAUSED"
    )
    effect_date: Annotated[StrictStr, AfterValidator(_iso_datetime)] | None = Field(
        default=None, description="ISO 8601, UTC when no offset is given; default now"
    )
    interval: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_INTERVAL_DAYS,
        description="with PAUSED: days until an automatic return to ACTIVE",
    )
    details: Annotated[StrictStr, Field(max_length=256), AfterValidator(_no_nul)] | None = None

    def status(self) -> SubscriptionStatus:
        return SubscriptionStatus(self.status_id)

    @model_validator(mode="after")
    def _return_date_fits(self) -> StatusChangeBody:
        if self.effect_date is not None and self.interval is not None:
            try:
                self.effect_date + timedelta(days=self.interval)
            except OverflowError:
                raise ValueError("effect_date plus interval is past the year 9999") from None
        return self


class LegacyStatusChangeBody(StatusChangeBody):
    """POST /subscription/update/{id} (the challenge's starting repository): the same change,
    and the body may name the subscription too."""

    subscription_id: OpaqueId | StrictInt | None = Field(
        default=None, description="must equal the path's id when given"
    )

    def names_another_subscription(self, path_id: str) -> bool:
        return self.subscription_id is not None and str(self.subscription_id) != path_id


# Any id as the table may hold it (written by SQL): only NUL cannot be stored.
StoredId = Annotated[
    StrictStr,
    Field(min_length=1, max_length=36, description="an id as stored: 1 to 36 characters"),
    AfterValidator(_no_nul),
]


class EligibleQuery(Shape):
    limit: Annotated[int, BeforeValidator(_whole_number_text)] | None = Field(
        default=None, ge=1, le=MAX_ELIGIBLE_PAGE, description="page size (about 4 MB at most)"
    )
    after: StoredId | None = Field(default=None, description="the last id of the previous page")


class OpaqueIdPath(Shape):
    id: OpaqueId = Field(description="a subscription id from the path")


class ChargePath(Shape):
    id: OpaqueId = Field(description="the subscription to charge")
    request_id: OpaqueId = Field(
        description="the caller's idempotency key, sent to the platform as /order/{request_id}"
    )


# --- webhooks from the e-commerce platform ---------------------------------------------

EventId = Annotated[
    StrictStr,
    Field(min_length=1, max_length=128, description="the platform's unique event id"),
    AfterValidator(_printable),
]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=500), AfterValidator(_no_nul)]
OccurredAt = Annotated[StrictStr, AfterValidator(_iso_datetime)] | None


class PaymentOutcomeData(Shape):
    request_id: OpaqueId = Field(description="the request id of the order we placed")
    outcome: Literal["success", "failure"]
    reason: Reason | None = None

    @model_validator(mode="after")
    def _failure_has_reason(self) -> PaymentOutcomeData:
        if self.outcome == "failure" and not self.reason:
            raise ValueError("a failure needs a reason")
        return self


class RefundData(Shape):
    request_id: OpaqueId = Field(description="the request id of the refunded order")
    reason: Reason
    amount: Decimal | None = Field(default=None, ge=0, le=10**9, decimal_places=2)


class CardUnavailableData(Shape):
    customer_id: OpaqueId = Field(description="the customer's id in the e-commerce platform")
    reason: Literal["expired", "cancelled"]


class _Event(Shape):
    event_id: EventId
    occurred_at: OccurredAt = None


class PaymentOutcomeEvent(_Event):
    type: Literal["payment-outcome"]
    data: PaymentOutcomeData


class RefundEvent(_Event):
    type: Literal["refund"]
    data: RefundData


class CardUnavailableEvent(_Event):
    type: Literal["card-unavailable"]
    data: CardUnavailableData


class WebhookBody(
    RootModel[
        Annotated[
            PaymentOutcomeEvent | RefundEvent | CardUnavailableEvent, Field(discriminator="type")
        ]
    ]
):
    model_config = ConfigDict(defer_build=True)


# --- club changes (handlers/club_change.py) ------------------------------------------------


class ClubChangeBody(Shape):
    club_id: StrictInt = Field(
        ge=INT32_MIN, le=INT32_MAX, description="the club to move to (must be ACTIVE)"
    )
    when: Literal["next_period", "now"] = Field(
        default="next_period",
        description="next_period: the first period boundary whose period has no charge;"
        " now: only while the current period has no charge",
    )
    preview: StrictBool = Field(
        default=False, description="answer what would happen and write nothing"
    )
    replace: StrictBool = Field(default=False, description="replace a pending change")


# --- the read endpoints (GET /clubs, /club/{id}, /subscription/{id}) -------------------


class ClubsQuery(Shape):
    status: Literal["ACTIVE", "CLOSED", "INACTIVE", "NONE", "ALL"] = Field(
        default="ACTIVE",
        description=(
            "the clubs whose current status is this one; ACTIVE (the default) are those a"
            " visitor may join now, NONE those with no current status (not open yet), ALL every"
            " club"
        ),
    )


# GET /billing/forecast (the operators' desk, issue 16).
def _naive_utc(value: datetime) -> datetime:
    """Instants are compared with naive UTC columns: an offset is converted, none is UTC.
    Years 2000-2999 only: windows and periods are added to it without overflow."""
    value = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if not 2000 <= value.year <= 2999:
        raise ValueError("at must be an instant between the years 2000 and 2999")
    return value


class ForecastQuery(Shape):
    at: Annotated[datetime, AfterValidator(_naive_utc)] | None = Field(
        default=None, description="the run's instant (ISO 8601); default: the next daily run"
    )
    club_id: Annotated[int, BeforeValidator(_whole_number_text)] | None = Field(
        default=None, ge=1, le=2**31 - 1, description="only this club's details"
    )
    after: StoredId | None = Field(default=None, description="the last id of the previous page")
    limit: Annotated[int, BeforeValidator(_whole_number_text)] = Field(
        default=1000, ge=1, le=10000, description="details per page"
    )
