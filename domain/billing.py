"""The billing run: which subscriptions to charge now, and charging (or ending) each one.

`plan` streams the eligible subscriptions and says, for each, whether its current period
still needs a charge; `settle` handles one of them with the same `charges.charge` as the
endpoint, so the ledger keeps it exactly once however often a message is delivered.

A period whose charge failed is retried by later runs until `retry_window` after its
billing date (or after its first attempt, when that came later); once the window has
closed without success the subscription is cancelled through its status history and the
ledger row becomes `abandoned`, also when the first run after the window came only in a
later period. A customer whose card the platform reported unavailable is cancelled at
the next billing instead of charged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain import audit, charges, errors, schedules, subscriptions
from domain.audit import Action, AuditEntry
from domain.charges import Charge, ChargeState, ChargeTarget
from domain.model import SHIPPING_CLUB_STATUSES, SubscriptionStatus
from domain.ports import Ecommerce, UnitOfWork

# Fixed forever: request ids derived from it must stay the same across deployments.
REQUEST_ID_NAMESPACE = uuid.UUID("6f1c8f2e-5b7d-4e1a-9c3b-2d4e6f8a0b1c")
DEFAULT_RETRY_WINDOW = timedelta(days=5)
# States after which a period needs nothing more.
SETTLED = frozenset({ChargeState.SUCCEEDED, ChargeState.ABANDONED})
FAILED = ChargeState.FAILED


class Outcome(StrEnum):
    CHARGED = "charged"
    ALREADY_CHARGED = "already charged"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


def request_id_for(subscription_id: str, period: str, failed_attempts: int = 0) -> str:
    """The deterministic request id of a period's charge (36 characters).

    After a known refusal the platform may hold a failed order under the previous id,
    so each retry after a refusal gets its own id, still derived from the ledger.
    """
    name = f"{subscription_id}:{period}"
    if failed_attempts:
        name += f":{failed_attempts}"
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, name))


@dataclass(frozen=True)
class Candidate:
    """An eligible subscription as the run streams it."""

    subscription_id: str
    schedule: schedules.Schedule
    started: datetime | None


@dataclass(frozen=True)
class CardReport:
    """The platform told us this customer's card can no longer be charged."""

    customer_id: str
    reason: str
    reported_at: datetime


@dataclass(frozen=True)
class LedgerState:
    state: ChargeState
    attempts: int


@dataclass(frozen=True)
class BillingMessage:
    """One subscription to settle: the body of one queue message."""

    subscription_id: str
    period: str
    request_id: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> BillingMessage:
        if not isinstance(data, dict):
            raise ValueError("a billing message is a JSON object")
        values = {name: data.get(name) for name in ("subscription_id", "period", "request_id")}
        if not all(isinstance(v, str) and 0 < len(v) <= 36 for v in values.values()):
            raise ValueError("a billing message needs subscription_id, period and request_id")
        return cls(**values)


@dataclass(frozen=True)
class Planned:
    """The run's decision for one eligible subscription: a message, or why none is needed."""

    message: BillingMessage | None
    settled_as: ChargeState | None = None


def plan(uow: UnitOfWork, now: datetime, chunk: int = 1000) -> Iterator[Planned]:
    """Stream every eligible subscription with what its current period still needs.

    The eligible set comes from a server-side cursor, `chunk` rows at a time, and the
    ledger is read once per chunk: memory stays bounded by the chunk, not the set.
    """
    with uow:
        for rows in uow.billing.eligible(now, SHIPPING_CLUB_STATUSES, chunk):
            periods = [
                (row.subscription_id, schedules.period_for(row.schedule, now, row.started).key)
                for row in rows
            ]
            ledger = uow.billing.ledger_states(periods)
            for subscription_id, period in periods:
                recorded = ledger.get((subscription_id, period))
                if recorded is not None and recorded.state in SETTLED:
                    yield Planned(None, recorded.state)
                    continue
                failed = recorded.attempts if recorded and recorded.state == FAILED else 0
                request_id = request_id_for(subscription_id, period, failed)
                yield Planned(BillingMessage(subscription_id, period, request_id))


def eligible_count(uow: UnitOfWork, now: datetime) -> int:
    """How many subscriptions a run at `now` looks at (for a progress bar)."""
    with uow:
        return uow.billing.count_eligible(now, SHIPPING_CLUB_STATUSES)


class Step(StrEnum):
    """What the run does with one eligible subscription (the forecast's vocabulary too)."""

    CHARGE = "charge"  # the period's first attempt
    RETRY = "retry"  # a failed or unanswered period, inside its window
    IN_PROGRESS = "in progress"  # an attempt still in flight: the worker waits for it
    CANCEL = "cancel"
    ALREADY_CHARGED = "already charged"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    action: Step
    period: str
    reason: str | None = None
    # The ledger row a cancellation closes (abandoned), if any.
    unpaid: Charge | None = None
    attempt: int | None = None
    # The last attempt the window leaves if the run stays daily.
    max_attempts: int | None = None


def decide(
    target: ChargeTarget,
    ledger: Charge | None,
    card: Callable[[], CardReport | None],
    earlier: Callable[[], Charge | None],
    now: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
) -> Decision:
    """What `settle` does for this subscription at `now`; the forecast asks the same.

    `card` and `earlier` (the latest open charge of another period) are read only when
    the decision needs them.
    """
    period = target.period(now)
    if ledger is not None and ledger.state == ChargeState.SUCCEEDED:
        return Decision(Step.ALREADY_CHARGED, period.key)
    if ledger is not None and ledger.state == ChargeState.ABANDONED:
        return Decision(Step.SKIP, period.key, "the period was abandoned")
    reason = charges.not_eligible_reason(target)
    if reason:
        return Decision(Step.SKIP, period.key, reason)
    report = card()
    if report is not None:
        details = (
            f"Cancelled by billing: the customer's card is {report.reason} "
            f"(reported by the e-commerce platform on {report.reported_at:%Y-%m-%d})"
        )
        return Decision(Step.CANCEL, period.key, details, ledger)
    # A failed period left behind when no run came between its window closing and
    # the start of this one: it still ends the subscription.
    for unpaid, billing_date in ((earlier(), None), (ledger, period.billing_date)):
        if unpaid is not None and _window_closed(
            unpaid, billing_date, now, pending_timeout, retry_window
        ):
            details = (
                f"Cancelled by billing: no successful charge for {unpaid.period} within "
                f"{_days(retry_window)} (last answer: {_last_answer(unpaid)})"
            )
            return Decision(Step.CANCEL, unpaid.period, details, unpaid)
    if ledger is None:
        closes = max(period.billing_date, now) + retry_window
        return Decision(Step.CHARGE, period.key, attempt=1, max_attempts=_last(1, now, closes))
    if ledger.state == ChargeState.PENDING and ledger.last_attempt_at > now - pending_timeout:
        return Decision(Step.IN_PROGRESS, period.key, attempt=ledger.attempts)
    opened = max(ledger.billing_date or period.billing_date, ledger.created_at)
    attempt = ledger.attempts + 1
    return Decision(
        Step.RETRY,
        period.key,
        _last_answer(ledger),
        attempt=attempt,
        max_attempts=_last(attempt, now, opened + retry_window),
    )


def _last(attempt: int, now: datetime, closes: datetime) -> int:
    """The number of the last attempt if daily runs follow this one until the window closes."""
    return attempt + max(0, -(-(closes - now) // timedelta(days=1)) - 1)


def settle(
    uow: UnitOfWork,
    platform: Ecommerce,
    subscription_id: str,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
) -> Outcome:
    """Charge, or end, one subscription for its current period.

    Raises ChargeInProgress and PlatformError (5xx, unreachable, timeout): the caller
    retries those (SQS redelivers the message). A 4xx refusal is FAILED: later runs
    retry it inside the window.
    """
    now = clock()
    with uow:
        target = uow.charges.target(subscription_id, now)
        if target is None:
            return Outcome.SKIPPED
        period = target.period(now)
        ledger = uow.charges.find_for_update(subscription_id, period.key)
        decision = decide(
            target,
            ledger,
            lambda: uow.billing.card_unavailable(target.customer_id),
            lambda: uow.charges.open_before(subscription_id, period.key),
            now,
            pending_timeout,
            retry_window,
        )
    if decision.action == Step.ALREADY_CHARGED:
        return Outcome.ALREADY_CHARGED
    if decision.action == Step.SKIP:
        return Outcome.SKIPPED
    if decision.action == Step.CANCEL:
        _cancel(uow, target, decision.period, decision.unpaid, now, decision.reason)
        return Outcome.CANCELLED
    failed = ledger.attempts if ledger is not None and ledger.state == FAILED else 0
    request_id = request_id_for(subscription_id, period.key, failed)
    try:
        result = charges.charge(
            uow, platform, subscription_id, request_id, clock, pending_timeout, audit.BILLING_RUN
        )
    except (errors.SubscriptionNotEligible, errors.SubscriptionNotFound, errors.ChargeAbandoned):
        return Outcome.SKIPPED
    if result.replayed:
        return Outcome.ALREADY_CHARGED
    return Outcome.CHARGED if 200 <= result.answer.status < 300 else Outcome.FAILED


def _window_closed(
    ledger: Charge,
    billing_date: datetime | None,
    now: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta,
) -> bool:
    # A first attempt later than the billing date (a member who joined mid-period, a run
    # that did not happen) still gets the whole window.
    opened = max(ledger.billing_date or billing_date or ledger.created_at, ledger.created_at)
    if now < opened + retry_window:
        return False
    if ledger.state == ChargeState.PENDING:
        # An attempt still in flight may yet succeed: only a dead one counts as a failure.
        return ledger.last_attempt_at <= now - pending_timeout
    return ledger.state in (ChargeState.FAILED, ChargeState.UNKNOWN)


def _days(window: timedelta) -> str:
    days = window / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")


def _last_answer(ledger: Charge) -> str:
    if ledger.failure_reason:
        return ledger.failure_reason
    if ledger.platform_status is not None:
        return f"HTTP {ledger.platform_status}"
    return "no answer" if ledger.state != ChargeState.FAILED else "refused"


def _cancel(
    uow: UnitOfWork,
    target: ChargeTarget,
    period: str,
    ledger: Charge | None,
    now: datetime,
    details: str,
) -> None:
    """Cancel through the status history (superseding scheduled changes, as the status
    endpoint does) and, in the same transaction, close the ledger and audit both."""

    def record(tx: UnitOfWork) -> None:
        charge_id = None
        if ledger is not None:
            charge_id = tx.charges.settle(ledger.id, ChargeState.ABANDONED, details, now).id
            tx.audit.add(
                AuditEntry(
                    Action.ABANDONED,
                    audit.BILLING_RUN,
                    now,
                    target.subscription_id,
                    period,
                    charge_id,
                    ledger.request_id,
                    target.customer_id,
                    f"final failure after {ledger.attempts} attempt(s): {_last_answer(ledger)}",
                )
            )
        tx.audit.add(
            AuditEntry(
                Action.CANCELLATION,
                audit.BILLING_RUN,
                now,
                target.subscription_id,
                period,
                charge_id,
                customer_id=target.customer_id,
                details=details,
            )
        )

    subscriptions.change_status(
        uow,
        target.subscription_id,
        SubscriptionStatus.CANCELLED,
        now,
        details=details[:256],
        also=record,
    )
