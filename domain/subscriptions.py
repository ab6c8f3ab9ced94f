"""Who may subscribe, how a subscription's status changes, and what is eligible."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from domain import club_changes, errors, timelines
from domain.model import (
    AUTOMATIC_RETURN_DETAILS,
    SHIPPING_CLUB_STATUSES,
    SUPERSEDED_REASON,
    ClubStatus,
    StatusChange,
    Subscription,
    SubscriptionStatus,
    new_id,
    status_name,
)
from domain.ports import UnitOfWork
from domain.read_model import opens_at


def subscribe(
    uow: UnitOfWork,
    club_id: int,
    customer_id: str,
    now: datetime,
    make_id: Callable[[], str] = new_id,
) -> Subscription:
    with uow:
        if not uow.clubs.exists(club_id):
            raise errors.ClubNotFound(club_id)
        club_status = uow.clubs.current_status(club_id, now)
        if club_status != ClubStatus.ACTIVE:
            # Says when it opens, if an opening is the club's next scheduled change.
            later = timelines.timeline(uow.views.club_history(club_id), now)
            opening = opens_at(later.status_id, later.scheduled[0] if later.scheduled else None)
            raise errors.ClubNotOpen(club_id, status_name(ClubStatus, club_status), opening)
        subscription_id = make_id()
        # The reservation serialises identical concurrent requests; the lookup after it
        # catches subscriptions that operators inserted with plain SQL.
        holder = uow.subscriptions.claim(club_id, customer_id, subscription_id)
        holder = holder or uow.subscriptions.find_by_customer(club_id, customer_id)
        if holder is not None:
            raise errors.AlreadySubscribed(club_id, holder)
        subscription = Subscription(
            id=subscription_id,
            club_id=club_id,
            customer_id=customer_id,
            create_date=now,
            status_id=SubscriptionStatus.ACTIVE,
        )
        uow.subscriptions.add(subscription)
        uow.history.add(
            [
                StatusChange(
                    id=make_id(),
                    subscription_id=subscription_id,
                    status_id=SubscriptionStatus.ACTIVE,
                    effect_date=now,
                    create_date=now,
                    details="Subscription created",
                )
            ]
        )
        uow.commit()
        return subscription


def change_status(
    uow: UnitOfWork,
    subscription_id: str,
    status: SubscriptionStatus,
    now: datetime,
    effect_date: datetime | None = None,
    interval_days: int | None = None,
    details: str | None = None,
    make_id: Callable[[], str] = new_id,
    also: Callable[[UnitOfWork], None] | None = None,
) -> list[StatusChange]:
    """Append a status change; `also` writes more in the same transaction (the billing
    run closes its ledger row and audits the cancellation with it)."""
    effect = effect_date or now
    changes = [StatusChange(make_id(), subscription_id, status, effect, now, details)]
    if status == SubscriptionStatus.PAUSED and interval_days:
        changes.append(
            StatusChange(
                make_id(),
                subscription_id,
                SubscriptionStatus.ACTIVE,
                effect + timedelta(days=interval_days),
                now,
                AUTOMATIC_RETURN_DETAILS,
            )
        )
    with uow:
        if uow.subscriptions.get(subscription_id, now, lock=True) is None:
            raise errors.SubscriptionNotFound(subscription_id)
        # Club-change hook: a status change on either side cancels a pending club change
        # (both its scheduled rows), before the scheduled rows below are superseded.
        club_changes.cancel_for_status_change(uow, subscription_id, now, changes[0].id, details)
        uow.history.supersede_pending(
            subscription_id,
            now,
            superseded_by=changes[0].id,
            reason=SUPERSEDED_REASON.format(new_id=changes[0].id),
        )
        uow.history.add(changes)
        if also is not None:
            also(uow)
        uow.commit()
    return changes


def eligible_ids(
    uow: UnitOfWork, now: datetime, after: str | None = None, limit: int | None = None
) -> list[str]:
    """Ids of subscriptions ACTIVE now in a club that ships now (ACTIVE or CLOSED), by id."""
    with uow:
        return uow.subscriptions.eligible_ids(now, SHIPPING_CLUB_STATUSES, after, limit)
