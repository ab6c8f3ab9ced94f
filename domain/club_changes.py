"""Changing club: a member leaves one club and joins another at a period boundary (or now).

There is no proration: the period is the unit, and a period that has a ledger row keeps
its club. A change is written as two scheduled history rows at the effective instant,
CANCELLED on the subscription that is left and ACTIVE on the one that is joined (a new
subscription created at that instant, or the customer's earlier one in that club), and
a `club_change` row linking them. Nothing runs at the instant: the current-status rule
switches eligibility, charging and the billing run by itself. "Applied" is never
stored; the billing run only records it (audit) and abandons a declined period the old
subscription leaves behind.

A preview runs exactly the same code as the change and rolls back: it cannot disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from domain import audit, charges, errors, schedules
from domain.audit import Action, AuditEntry
from domain.club_change_model import (
    ChangeOutcome,
    ChangeRequest,
    ClubChange,
    FirstCharge,
    SweepReport,
    When,
)
from domain.model import (
    ClubStatus,
    StatusChange,
    Subscription,
    SubscriptionStatus,
    new_id,
    status_name,
)
from domain.ports import UnitOfWork

# Fixed forever: the request id of the ledger row that marks a period moved by a change.
MARKER_NAMESPACE = uuid.UUID("0c6b7a57-91c4-4d8e-a2f4-6a3f1f0e9b15")
# A new period boundary is at most this many periods away (each one with a ledger row).
MAX_BOUNDARIES = 36


def request_change(
    uow: UnitOfWork,
    request: ChangeRequest,
    now: datetime,
    make_id: Callable[[], str] = new_id,
) -> ChangeOutcome:
    with uow:
        outcome = _request(uow, request, now, make_id)
        if outcome.created and not request.preview:
            uow.commit()
    return outcome


def _request(
    uow: UnitOfWork, request: ChangeRequest, now: datetime, make_id: Callable[[], str]
) -> ChangeOutcome:
    subscription_id = request.subscription_id
    # The lock serialises requests (and status changes) on this subscription.
    subscription = uow.subscriptions.get(subscription_id, now, lock=True)
    if subscription is None:
        raise errors.SubscriptionNotFound(subscription_id)
    pending = uow.club_changes.pending_from(subscription_id, now)
    if pending is not None:
        if request.same_as(pending):
            return ChangeOutcome(pending, _first_charge(uow, pending), created=False)
        if not request.replace:
            raise errors.ClubChangePending(subscription_id, pending.id, pending.target_club_id)
    if subscription.status_id != SubscriptionStatus.ACTIVE:
        replayed = _replay_of_applied(uow, request, now)
        if replayed is not None:
            moved = None
            if replayed.when == When.NOW:
                schedule = uow.club_changes.schedule_of(replayed.club_id)
                start = subscription.create_date
                in_effect = schedules.period_in_effect(schedule, replayed.effective_at, start)
                moved = in_effect.key if in_effect is not None else None
            first = _first_charge(uow, replayed)
            return ChangeOutcome(replayed, first, created=False, moved_period=moved)
        raise errors.SubscriptionNotActive(
            subscription_id, status_name(SubscriptionStatus, subscription.status_id)
        )
    if request.club_id == subscription.club_id:
        raise errors.SameClub(subscription_id, request.club_id)
    if not uow.clubs.exists(request.club_id):
        raise errors.ClubNotFound(request.club_id)
    club_status = uow.clubs.current_status(request.club_id, now)
    if club_status != ClubStatus.ACTIVE:
        raise errors.ClubNotOpen(request.club_id, status_name(ClubStatus, club_status))
    if not subscription.customer_id:
        raise errors.SubscriptionNotEligible(subscription_id, "it has no customer id")
    change_id = make_id()
    if pending is not None:
        _cancel(
            uow,
            pending,
            now,
            f"replaced by club change {change_id}",
            audit.CLUB_CHANGE_ENDPOINT,
            superseded_by=change_id,
        )
    _require_nothing_scheduled(uow, subscription_id, now)

    target_id, reactivated, anchor = _target(uow, subscription, request.club_id, now, make_id)
    moved_period = None
    if request.when == When.NOW:
        effective = now
        period = schedules.period_in_effect(
            uow.club_changes.schedule_of(subscription.club_id), now, subscription.create_date
        )
        # None: the subscription is in the unbilled span of a schedule change, so there is
        # no period to move (nothing is billed until the new schedule's first period).
        if period is not None:
            # A ledger row for the period, inserted as the charge path would: whichever commits
            # first wins the (subscription, period) key, so a charge racing this change either
            # makes it refuse or finds the period closed. Never sent to the platform.
            marker = str(uuid.uuid5(MARKER_NAMESPACE, f"{subscription_id}:{period.key}"))
            reason = (
                f"moved to club {request.club_id} by club change {change_id}: never charged here"
            )
            sku = uow.club_changes.sku_of(subscription.club_id)
            if not uow.club_changes.reserve_period(subscription, period, marker, now, reason, sku):
                raise errors.PeriodAlreadyBilled(subscription_id, period.key)
            # The marker is the row's request id: registered like any (docs/money-path.md), so
            # no charge or promo can ever send it.
            charges.claim_request_id(uow, marker, charges.subject(subscription_id, period.key), now)
            moved_period = period.key
    else:
        effective = _next_boundary(uow, subscription, now)
    if anchor is None:
        anchor = effective
        uow.subscriptions.add(
            Subscription(
                id=target_id,
                club_id=request.club_id,
                customer_id=subscription.customer_id,
                create_date=effective,
            )
        )
    cancel_row = StatusChange(
        make_id(),
        subscription_id,
        SubscriptionStatus.CANCELLED,
        effective,
        now,
        f"Club change to {request.club_id}",
    )
    activate_row = StatusChange(
        make_id(),
        target_id,
        SubscriptionStatus.ACTIVE,
        effective,
        now,
        f"Club change from {subscription.club_id}",
    )
    uow.history.add([cancel_row, activate_row])
    change = ClubChange(
        id=change_id,
        subscription_id=subscription_id,
        club_id=subscription.club_id,
        target_subscription_id=target_id,
        target_club_id=request.club_id,
        customer_id=subscription.customer_id,
        when=request.when,
        effective_at=effective,
        reactivated=reactivated,
        cancel_row_id=cancel_row.id,
        activate_row_id=activate_row.id,
        history_rows=uow.club_changes.history_count([subscription_id, target_id]),
        created_at=now,
    )
    uow.club_changes.add(change)
    uow.audit.add(
        _entry(
            change,
            Action.CLUB_CHANGE_SCHEDULED,
            audit.CLUB_CHANGE_ENDPOINT,
            now,
            f"club change {change.id}: club {change.club_id} -> club {change.target_club_id}"
            f" ({'reactivating' if reactivated else 'new'} subscription {target_id})"
            f" at {effective.isoformat()} ({request.when.value})",
        )
    )
    if change.effective_at <= now:
        # "now": the instant has passed as it is written; the request records it at once.
        change = _record_applied(uow, change, now, audit.CLUB_CHANGE_ENDPOINT) or change
    first = _first_charge(uow, change, anchor)
    return ChangeOutcome(
        change,
        first,
        created=True,
        preview=request.preview,
        replaced=pending,
        moved_period=moved_period,
    )


def _replay_of_applied(uow: UnitOfWork, request: ChangeRequest, now: datetime) -> ClubChange | None:
    """The same request again after its change applied (a "now" change, a late retry): the
    change it made is still what the subscription's current status comes from."""
    latest = uow.club_changes.latest_from(request.subscription_id)
    if latest is None or latest.pending(now) or not request.same_as(latest):
        return None
    if uow.club_changes.current_row_id(request.subscription_id, now) != latest.cancel_row_id:
        return None
    return latest


def _require_nothing_scheduled(uow: UnitOfWork, subscription_id: str, now: datetime) -> None:
    scheduled = uow.club_changes.scheduled_effect_dates(subscription_id, now)
    if scheduled:
        raise errors.StatusChangeScheduled(subscription_id, min(scheduled).isoformat())


def _target(
    uow: UnitOfWork,
    subscription: Subscription,
    club_id: int,
    now: datetime,
    make_id: Callable[[], str],
) -> tuple[str, bool, datetime | None]:
    """The subscription to join: (id, reactivated, its anchor; None for a new one)."""
    customer = subscription.customer_id
    existing = uow.subscriptions.find_by_customer(club_id, customer)
    if existing is None:
        new = make_id()
        # One subscription per club and customer, as subscribe keeps it (also under
        # concurrency): the claim is the lock.
        existing = uow.subscriptions.claim(club_id, customer, new)
        if existing is None:
            return new, False, None
    target = uow.subscriptions.get(existing, now, lock=True)
    if target is None:  # removed between the two statements
        raise errors.AlreadySubscribed(club_id, existing)
    if target.status_id in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED):
        raise errors.AlreadySubscribed(club_id, existing)
    into = uow.club_changes.pending_touching(existing, now)
    if into:
        raise errors.ClubChangePending(into[0].subscription_id, into[0].id, club_id)
    _require_nothing_scheduled(uow, existing, now)
    return existing, True, target.create_date


def _next_boundary(uow: UnitOfWork, subscription: Subscription, now: datetime) -> datetime:
    """The first period boundary after now whose period has no ledger row."""
    schedule = uow.club_changes.schedule_of(subscription.club_id)
    anchor = subscription.create_date
    boundary = schedules.next_boundary(schedule, now, anchor)
    for _ in range(MAX_BOUNDARIES):
        # The period billing bills from this boundary on (none: an unbilled span).
        period = schedules.period_in_effect(schedule, boundary, anchor)
        if period is None or not uow.club_changes.ledger_has(subscription.id, period.key):
            break
        boundary = schedules.next_boundary(schedule, boundary, anchor)
    return boundary


def _first_charge(
    uow: UnitOfWork, change: ClubChange, anchor: datetime | None = None
) -> FirstCharge:
    schedule = uow.club_changes.schedule_of(change.target_club_id)
    if anchor is None:
        anchor = uow.club_changes.started(change.target_subscription_id)
    period = schedules.period_for(schedule, change.effective_at, anchor)
    return FirstCharge(
        schedule,
        period,
        uow.club_changes.sku_of(change.target_club_id),
        uow.club_changes.ledger_has(change.target_subscription_id, period.key),
    )


def cancel_change(uow: UnitOfWork, subscription_id: str, now: datetime) -> ClubChange:
    """DELETE: cancel the subscription's pending change."""
    with uow:
        if uow.subscriptions.get(subscription_id, now, lock=True) is None:
            raise errors.SubscriptionNotFound(subscription_id)
        pending = uow.club_changes.pending_from(subscription_id, now)
        if pending is None:
            raise errors.ClubChangeNotFound(subscription_id)
        reason = "cancelled by request"
        cancelled = _cancel(uow, pending, now, reason, audit.CLUB_CHANGE_ENDPOINT, pending.id)
        uow.commit()
    return cancelled or pending


def cancel_for_status_change(
    uow: UnitOfWork,
    subscription_id: str,
    now: datetime,
    status_row_id: str,
    details: str | None,
) -> list[ClubChange]:
    """Inside a status change's transaction: cancel every pending change either side of
    which is this subscription (both scheduled rows together), saying why."""
    cancelled = []
    for change in uow.club_changes.pending_touching(subscription_id, now):
        reason = f"status change {status_row_id} on subscription {subscription_id}"
        if details:
            reason += f": {details}"
        done = _cancel(
            uow,
            change,
            now,
            reason,
            audit.STATUS_CHANGE,
            superseded_by=status_row_id,
            # The status change is about to write on the target: keep that row.
            discard_target=subscription_id != change.target_subscription_id,
        )
        if done is not None:
            cancelled.append(done)
    return cancelled


def _cancel(
    uow: UnitOfWork,
    change: ClubChange,
    now: datetime,
    reason: str,
    actor: str,
    superseded_by: str,
    discard_target: bool = True,
) -> ClubChange | None:
    """Cancel a scheduled change (guarded: None when someone else cancelled it first)."""
    if not uow.club_changes.mark_cancelled(change.id, now, reason):
        return None
    uow.club_changes.supersede_rows(
        [change.cancel_row_id, change.activate_row_id],
        now,
        superseded_by,
        f"club change {change.id} cancelled: {reason}",
    )
    if discard_target and not change.reactivated:
        # The subscription made for the change never started: remove it (and its claim)
        # unless something else was written for it meanwhile.
        uow.club_changes.discard_unstarted(change.target_subscription_id)
    uow.audit.add(
        _entry(
            change,
            Action.CLUB_CHANGE_CANCELLED,
            actor,
            now,
            f"club change {change.id} to club {change.target_club_id} (subscription"
            f" {change.target_subscription_id}) cancelled: {reason}",
        )
    )
    return replace(change, cancelled=True, cancelled_at=now, cancel_reason=reason)


def cancel_interfered(uow: UnitOfWork, now: datetime, actor: str) -> list[ClubChange]:
    """Cancel pending changes whose subscriptions got a status row outside the API (SQL):
    the billing run and the eligible endpoint's absorber step call it."""
    with uow:
        suspects = uow.club_changes.interfered(now)
    cancelled = []
    for suspect in suspects:
        with uow:
            change = uow.club_changes.get(suspect.id, lock=True)
            if change is None or not change.pending(now):
                continue
            ids = [change.subscription_id, change.target_subscription_id]
            if uow.club_changes.history_count(ids) == change.history_rows:
                continue
            done = _cancel(
                uow,
                change,
                now,
                "a status row was written outside the API on subscription "
                f"{change.subscription_id} or {change.target_subscription_id}",
                actor,
                superseded_by=change.id,
            )
            uow.commit()
        if done is not None:
            cancelled.append(done)
    return cancelled


def sweep(uow: UnitOfWork, now: datetime, actor: str = audit.BILLING_RUN) -> SweepReport:
    """The billing run's pass over club changes, before it plans the charges."""
    cancelled = cancel_interfered(uow, now, actor)
    applied: list[ClubChange] = []
    abandoned: list[str] = []
    with uow:
        due = uow.club_changes.due_unrecorded(now)
    for change in due:
        with uow:
            if not uow.club_changes.rows_exist([change.cancel_row_id, change.activate_row_id]):
                # Its rows were removed by SQL before the instant: it never applied.
                done = _cancel(
                    uow,
                    change,
                    now,
                    "its scheduled history rows were removed outside the API",
                    actor,
                    change.id,
                    discard_target=False,
                )
                if done is not None:
                    cancelled.append(done)
            else:
                recorded = _record_applied(uow, change, now, actor)
                if recorded is not None:
                    applied.append(recorded)
                    abandoned.extend(recorded.abandoned_periods)
            uow.commit()
    return SweepReport(applied, cancelled, abandoned)


def _record_applied(
    uow: UnitOfWork, change: ClubChange, now: datetime, actor: str
) -> ClubChange | None:
    """Audit that the instant has passed (once: guarded) and abandon, without cancelling
    anything, a declined period the old subscription leaves unpaid: its box never shipped."""
    if not uow.club_changes.mark_applied(change.id, now):
        return None
    reason = (
        f"abandoned by club change {change.id}: the member moved to club"
        f" {change.target_club_id} on {change.effective_at.isoformat()}"
    )
    abandoned = uow.club_changes.abandon_failed(change.subscription_id, now, reason)
    for charge_id, period, request_id, attempts in abandoned:
        uow.audit.add(
            AuditEntry(
                Action.ABANDONED,
                actor,
                now,
                change.subscription_id,
                period,
                charge_id,
                request_id,
                change.customer_id,
                f"{reason} (after {attempts} attempt(s))",
            )
        )
    periods = [period for _, period, _, _ in abandoned]
    uow.audit.add(
        _entry(
            change,
            Action.CLUB_CHANGE_APPLIED,
            actor,
            now,
            f"club change {change.id}: club {change.club_id} -> club {change.target_club_id}"
            f" (subscription {change.target_subscription_id}) took effect at"
            f" {change.effective_at.isoformat()}"
            + (f"; abandoned unpaid {', '.join(periods)}" if periods else ""),
        )
    )
    return replace(change, applied_recorded_at=now, abandoned_periods=tuple(periods))


def _entry(change: ClubChange, action: Action, actor: str, now: datetime, details: str):
    return AuditEntry(
        action,
        actor,
        now,
        change.subscription_id,
        customer_id=change.customer_id,
        request_id=change.id,
        details=details,
    )
