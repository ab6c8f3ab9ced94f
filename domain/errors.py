"""Business conditions, each its own type; handlers/http.py alone maps them to HTTP."""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ClubNotFound(DomainError):
    code = "club_not_found"

    def __init__(self, club_id: int) -> None:
        super().__init__(f"club {club_id} does not exist", club_id=club_id)


class ClubNotOpen(DomainError):
    code = "club_not_open"

    def __init__(self, club_id: int, status: str | None, opens_at: datetime | None = None) -> None:
        state = f"is {status}" if status else "has no current status"
        if opens_at is None:
            super().__init__(
                f"club {club_id} {state} and does not accept new subscriptions",
                club_id=club_id,
            )
            return
        super().__init__(
            f"club {club_id} {state} and does not accept new subscriptions yet;"
            f" it opens at {opens_at.isoformat()} (UTC)",
            club_id=club_id,
            opens_at=opens_at.isoformat(),
        )


class AlreadySubscribed(DomainError):
    code = "already_subscribed"

    def __init__(self, club_id: int, subscription_id: str) -> None:
        super().__init__(
            f"this customer is already subscribed to club {club_id} "
            f"(subscription {subscription_id}); use the status endpoint to change it",
            subscription_id=subscription_id,
        )


class SubscriptionNotFound(DomainError):
    code = "subscription_not_found"

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"subscription {subscription_id} does not exist")


class SubscriptionNotEligible(DomainError):
    code = "subscription_not_eligible"

    def __init__(self, subscription_id: str, reason: str) -> None:
        super().__init__(f"subscription {subscription_id} is not eligible for charging: {reason}")


class ChargeInProgress(DomainError):
    code = "charge_in_progress"

    def __init__(self, subscription_id: str, period: str) -> None:
        super().__init__(
            f"a charge of subscription {subscription_id} for {period} is in progress; "
            "retry in a minute",
            period=period,
        )


class PlatformError(DomainError):
    """The e-commerce platform did not give a usable answer; the period stays chargeable.

    `sent` says whether the request may have reached the platform (its outcome is then
    unknown, and a retry must reuse the request id).
    """

    code = "platform_error"

    def __init__(self, message: str, *, sent: bool = True, **data: object) -> None:
        super().__init__(f"{message}; the month stays chargeable, retry later", **data)
        self.sent = sent


class PlatformFailed(PlatformError):
    code = "platform_error"


class PlatformUnreachable(PlatformError):
    code = "platform_unreachable"


class PlatformTimeout(PlatformError):
    code = "platform_timeout"


class PlatformNotConfigured(DomainError):
    code = "platform_not_configured"

    def __init__(self, what: str) -> None:
        super().__init__(f"charging is not configured: {what}")


class ChargeAbandoned(DomainError):
    code = "charge_abandoned"

    def __init__(self, subscription_id: str, period: str) -> None:
        super().__init__(
            f"billing gave up on subscription {subscription_id} for {period}: its retry "
            "window closed without a successful charge",
            period=period,
        )


class InvalidWebhook(DomainError):
    """A signed webhook whose event cannot be understood."""

    code = "invalid_event"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class WebhookNotConfigured(DomainError):
    code = "webhooks_not_configured"

    def __init__(self, what: str) -> None:
        super().__init__(f"webhooks are not configured: {what}")


# --- flash promos ------------------------------------------------------------------------


class PromoNotFound(DomainError):
    code = "promo_not_found"

    def __init__(self, promo_id: int) -> None:
        super().__init__(f"promo {promo_id} does not exist", promo_id=promo_id)


class CustomerProfileNotFound(DomainError):
    code = "customer_not_found"

    def __init__(self) -> None:
        # The id is the customer's: it is not echoed (personal data stays out of logs).
        super().__init__("this customer has no profile (location and segments) for promos")


class PromoNotRunning(DomainError):
    code = "promo_not_running"

    def __init__(self, promo_id: int, why: str) -> None:
        super().__init__(f"promo {promo_id} is not running: {why}", promo_id=promo_id)


class NotEligible(DomainError):
    """Segment or distance; 422, not 403 (API Gateway's answer to a missing key)."""

    code = "not_eligible"

    def __init__(self, promo_id: int, reason: str, message: str) -> None:
        super().__init__(message, promo_id=promo_id, reason=reason)


class PromoUnavailable(DomainError):
    code = "promo_unavailable"

    def __init__(self, promo_id: int) -> None:
        super().__init__(
            f"every unit of promo {promo_id} is sold or held by another customer; "
            "a hold that is not completed is offered again when it expires",
            promo_id=promo_id,
        )


class AlreadyPurchased(DomainError):
    code = "already_purchased"

    def __init__(self, promo_id: int, reservation_id: str) -> None:
        super().__init__(
            f"this customer already bought promo {promo_id} (one unit per customer)",
            promo_id=promo_id,
            reservation_id=reservation_id,
        )


class ReservationNotFound(DomainError):
    code = "reservation_not_found"

    def __init__(self, promo_id: int, reservation_id: str) -> None:
        super().__init__(
            f"promo {promo_id} has no reservation {reservation_id}",
            promo_id=promo_id,
            reservation_id=reservation_id,
        )


class ReservationExpired(DomainError):
    code = "reservation_expired"

    def __init__(self, reservation_id: str, expired_at: str) -> None:
        super().__init__(
            f"reservation {reservation_id} expired at {expired_at}; reserve again if a "
            "unit is left",
            reservation_id=reservation_id,
            expired_at=expired_at,
        )


class PurchaseInProgress(DomainError):
    code = "purchase_in_progress"

    def __init__(self, reservation_id: str) -> None:
        super().__init__(
            f"the purchase of reservation {reservation_id} is in progress; retry in a minute",
            reservation_id=reservation_id,
        )


# --- club changes (domain/club_changes.py) -----------------------------------------------


class SubscriptionNotActive(DomainError):
    code = "subscription_not_active"

    def __init__(self, subscription_id: str, status: str | None) -> None:
        state = f"is {status}" if status else "has no current status"
        super().__init__(
            f"subscription {subscription_id} {state}: only an ACTIVE subscription changes club"
            " (a paused member resumes first)",
            subscription_status=status,
        )


class SameClub(DomainError):
    code = "same_club"

    def __init__(self, subscription_id: str, club_id: int) -> None:
        super().__init__(
            f"subscription {subscription_id} is already in club {club_id}", club_id=club_id
        )


class PeriodAlreadyBilled(DomainError):
    code = "period_already_billed"

    def __init__(self, subscription_id: str, period: str) -> None:
        super().__init__(
            f"period {period} of subscription {subscription_id} already has a charge (made or"
            ' in flight): it keeps its club; change with "when": "next_period"',
            period=period,
        )


class ClubChangePending(DomainError):
    code = "club_change_pending"

    def __init__(self, subscription_id: str, change_id: str, target_club_id: int) -> None:
        super().__init__(
            f"subscription {subscription_id} already has a pending change (club change"
            f' {change_id} to club {target_club_id}); send "replace": true to replace it,'
            " or DELETE it first",
            club_change_id=change_id,
            target_club_id=target_club_id,
        )


class ClubChangeNotFound(DomainError):
    code = "club_change_not_found"

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"subscription {subscription_id} has no pending club change")


class StatusChangeScheduled(DomainError):
    code = "status_change_scheduled"

    def __init__(self, subscription_id: str, effect_date: str) -> None:
        super().__init__(
            f"subscription {subscription_id} has a status change scheduled for {effect_date};"
            " a club change cannot be scheduled over it (replace it through the status"
            " endpoint first)",
            effect_date=effect_date,
        )


class PlatformRefused(PlatformError):
    """The platform refused *us* (401, 403: our key or secret) or asked us to slow down
    (408, 429): not the caller's fault and never a decline. 502, or 503 with Retry-After
    (the platform's own when it sent a valid one, else 60 seconds)."""

    code = "platform_error"

    def __init__(self, status: int, response: object, retry_after: str | None = None) -> None:
        what = "throttled us" if status in (408, 429) else "refused our credentials"
        super().__init__(
            f"the e-commerce platform {what} (HTTP {status})",
            platform_status=status,
            platform_response=response,
        )
        self.status = 503 if status == 429 else 502
        self.headers = {"Retry-After": retry_after or "60"} if status == 429 else {}


class RequestIdInUse(DomainError):
    code = "request_id_in_use"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request id {request_id} was already sent to the platform for another "
            "subscription or period; use a new one",
            request_id=request_id,
        )


class LookupUnsupported(DomainError):
    """The platform offers no way to ask about an order: report, never guess."""

    code = "lookup_unsupported"

    def __init__(self, what: str) -> None:
        super().__init__(f"the e-commerce platform cannot {what}")


# --- the operators' desk (ops/__main__.py) -----------------------------------------------


class NothingToDo(DomainError):
    """An operator's action that does not apply to what the ledger or history says now."""

    code = "nothing_to_do"

    def __init__(self, message: str) -> None:
        super().__init__(message)
