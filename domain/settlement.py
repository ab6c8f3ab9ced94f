"""Carrying out one message of the billing run (the worker's side of domain/billing.py):
charge, cancel or abandon a period after re-reading the ledger under lock, with the same
`charges.charge` as the endpoint, so the ledger keeps each period exactly once however
often a message comes. A message whose reason is gone (paid meanwhile, window closed,
card report cleared) is skipped; platform failures never cancel anyone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from domain import audit, charges, errors, schedules, subscriptions
from domain.audit import Action, AuditEntry
from domain.billing import (
    DEFAULT_RETRY_WINDOW,
    FAILED,
    BillingMessage,
    Candidate,
    CardReport,
    Outcome,
    Step,
    decide,
    request_id_for,
    window_closed,
    window_days,
)
from domain.charges import Charge, ChargeState, ChargeTarget
from domain.model import SubscriptionStatus
from domain.ports import Ecommerce, UnitOfWork


def settle(
    uow: UnitOfWork,
    platform: Ecommerce,
    subscription_id: str,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
    period: str | None = None,
    step: Step = Step.CHARGE,
) -> Outcome:
    """Carry out one message: charge, cancel or abandon `period` (default: the current
    one) after re-reading the ledger under lock; a message whose reason is gone (paid
    meanwhile, window closed, card report cleared) is skipped.

    Raises ChargeInProgress and PlatformError (5xx, unreachable, timeout, refused
    credentials, throttling): the caller retries those (SQS redelivers the message).
    """
    now = clock()
    with uow:
        target = uow.charges.target(subscription_id, now)
        if target is None:
            return Outcome.SKIPPED
        current = target.period(now)
        key = period or (current.key if current else None)
        if key is None:
            return Outcome.SKIPPED
        ledger = uow.charges.find_for_update(subscription_id, key)
        if ledger is not None and ledger.state == ChargeState.SUCCEEDED:
            return Outcome.ALREADY_CHARGED
        if ledger is not None and ledger.state == ChargeState.ABANDONED:
            return Outcome.SKIPPED
        if charges.not_eligible_reason(target):
            return Outcome.SKIPPED
        card = uow.billing.card_unavailable(target.customer_id, target.started)
        latest_paid = None
        closed = ledger is not None and ledger.state == FAILED
        if closed and window_closed(ledger, now, retry_window):
            # Only a declined period whose window closed asks it (decide, _settle_cancel).
            latest_paid = uow.charges.latest_paid(subscription_id)
    if step == Step.ABANDON:
        return _abandon(uow, target, key, ledger, now, current)
    if step == Step.CANCEL:
        return _settle_cancel(uow, target, key, ledger, card, latest_paid, now, retry_window)
    is_current = current is not None and key == current.key
    # The run's own decision (`decide`, what `plan` queued and the forecast reported),
    # taken again on the ledger row just read under lock: the message is carried out only
    # if it still stands. So an earlier period is retried only after a decline and inside
    # its window, a closed window or a card report is left to the next run's plan (behind
    # the breaker), an error/unknown earlier period is not charged here. An attempt in
    # flight goes on to `charges.charge`, which answers ChargeInProgress (SQS retries).
    messages, _settled = decide(
        Candidate(subscription_id, target.schedule, target.started),
        current,
        [ledger] if ledger is not None else [],
        card,
        latest_paid,
        now,
        retry_window,
        pending_timeout,
    )
    in_flight = is_current and ledger is not None and ledger.state == ChargeState.PENDING
    if not in_flight and not any(m.period == key and m.step == Step.CHARGE for m in messages):
        return Outcome.SKIPPED
    failed = ledger.attempts if ledger is not None and ledger.state == FAILED else 0
    request_id = request_id_for(subscription_id, key, failed)
    wanted = current if is_current else schedules.Period(key, ledger.billing_date or now)
    try:
        result = charges.charge(
            uow,
            platform,
            subscription_id,
            request_id,
            clock,
            pending_timeout,
            audit.BILLING_RUN,
            period=wanted,
        )
    except (errors.SubscriptionNotEligible, errors.SubscriptionNotFound, errors.ChargeAbandoned):
        return Outcome.SKIPPED
    if result.replayed:
        return Outcome.ALREADY_CHARGED
    state = charges.answer_state(result.answer.status)
    if state == ChargeState.SUCCEEDED:
        return Outcome.CHARGED
    return Outcome.FAILED if state == FAILED else Outcome.PLATFORM_ERROR


class _Voided(Exception):
    """The ledger row moved under the cancellation: roll it back, cancel nobody."""


def settle_message(
    uow: UnitOfWork,
    platform: Ecommerce,
    message: BillingMessage,
    clock: Callable[[], datetime],
    pending_timeout: timedelta,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
) -> Outcome:
    """`settle` for a queued message: its subscription, period and step."""
    return settle(
        uow,
        platform,
        message.subscription_id,
        clock,
        pending_timeout,
        retry_window,
        period=message.period,
        step=message.step,
    )


def _settle_cancel(
    uow: UnitOfWork,
    target: ChargeTarget,
    key: str,
    ledger: Charge | None,
    card: CardReport | None,
    latest_paid: datetime | None,
    now: datetime,
    retry_window: timedelta,
) -> Outcome:
    if card is not None:
        details = (
            f"Cancelled by billing: the customer's card is {card.reason} "
            f"(reported by the e-commerce platform on {card.reported_at:%Y-%m-%d})"
        )
        return _cancel(uow, target, key, ledger, now, details)
    if ledger is None or ledger.state != FAILED or not window_closed(ledger, now, retry_window):
        return Outcome.SKIPPED
    if latest_paid is not None and ledger.billing_date and latest_paid > ledger.billing_date:
        # Never cancel for a period older than the latest paid one.
        return _abandon(uow, target, key, ledger, now, None)
    details = (
        f"Cancelled by billing: no successful charge for {key} within "
        f"{window_days(retry_window)} (last answer: {_last_answer(ledger)})"
    )
    return _cancel(uow, target, key, ledger, now, details)


def _abandon(
    uow: UnitOfWork,
    target: ChargeTarget,
    key: str,
    ledger: Charge | None,
    now: datetime,
    current: schedules.Period | None,
) -> Outcome:
    """Close a period without cancelling anyone: a later period was paid, or it ended
    after platform failures only. A current period is never abandoned this way."""
    if ledger is None or (current is not None and key == current.key):
        return Outcome.SKIPPED
    with uow:
        row = uow.charges.find_for_update(target.subscription_id, key)
        if row is None or row.state not in (FAILED, ChargeState.ERROR):
            return Outcome.SKIPPED
        closed = uow.charges.transition(
            row, ChargeState.ABANDONED, now, reason=f"abandoned: {_last_answer(row)}"
        )
        if closed is None:
            return Outcome.SKIPPED
        uow.audit.add(
            AuditEntry(
                Action.ABANDONED,
                audit.BILLING_RUN,
                now,
                target.subscription_id,
                key,
                row.id,
                row.request_id,
                details=f"period closed without cancelling anyone after {row.attempts} "
                f"attempt(s): {_last_answer(row)}",
            )
        )
        uow.commit()
    return Outcome.ABANDONED


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
) -> Outcome:
    """Cancel through the status history (superseding scheduled changes, as the status
    endpoint does) and, in the same transaction, close the ledger and audit both."""

    def record(tx: UnitOfWork) -> None:
        charge_id = None
        if ledger is not None:
            # Re-read under lock: only a row still failed, unknown or errored is closed;
            # one paid (or settled) meanwhile voids the whole cancellation.
            row = tx.charges.find_for_update(target.subscription_id, period)
            if row is None or row.state not in (
                FAILED,
                ChargeState.UNKNOWN,
                ChargeState.ERROR,
                ChargeState.PENDING,
            ):
                raise _Voided
            closed = tx.charges.transition(row, ChargeState.ABANDONED, now, reason=details)
            if closed is None:
                raise _Voided
            charge_id = closed.id
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

    try:
        subscriptions.change_status(
            uow,
            target.subscription_id,
            SubscriptionStatus.CANCELLED,
            now,
            details=details[:256],
            also=record,
        )
    except _Voided:
        return Outcome.SKIPPED
    return Outcome.CANCELLED
