"""The values of a club change (domain/club_changes.py has the rules): what is stored,
asked and answered, and how it reads as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain import schedules


class When(StrEnum):
    NEXT_PERIOD = "next_period"
    NOW = "now"


class State(StrEnum):
    SCHEDULED = "scheduled"
    APPLIED = "applied"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ClubChange:
    id: str
    subscription_id: str
    club_id: int | None
    target_subscription_id: str
    target_club_id: int
    customer_id: str | None
    when: When
    effective_at: datetime
    reactivated: bool
    cancel_row_id: str
    activate_row_id: str
    history_rows: int
    created_at: datetime
    cancelled: bool = False
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    applied_recorded_at: datetime | None = None
    # Periods of the old subscription the billing run abandoned when recording the change.
    abandoned_periods: tuple[str, ...] = ()

    def state(self, now: datetime) -> State:
        if self.cancelled:
            return State.CANCELLED
        return State.APPLIED if self.effective_at <= now else State.SCHEDULED

    def pending(self, now: datetime) -> bool:
        return self.state(now) == State.SCHEDULED


@dataclass(frozen=True)
class ChangeRequest:
    subscription_id: str
    club_id: int
    when: When = When.NEXT_PERIOD
    preview: bool = False
    replace: bool = False

    def same_as(self, change: ClubChange) -> bool:
        return change.target_club_id == self.club_id and change.when == self.when


@dataclass(frozen=True)
class FirstCharge:
    """What the target subscription is charged first: the period it is in at the instant."""

    schedule: schedules.Schedule
    period: schedules.Period
    sku: int | None
    already_charged: bool


@dataclass(frozen=True)
class ChangeOutcome:
    change: ClubChange
    first_charge: FirstCharge
    # True when this request wrote it (201); False for a replay of the same body (200).
    created: bool
    preview: bool = False
    replaced: ClubChange | None = None
    # The period of the old subscription that moves to the target club ("now" only).
    moved_period: str | None = None


@dataclass(frozen=True)
class SweepReport:
    applied: list[ClubChange]
    cancelled: list[ClubChange]
    abandoned_periods: list[str]


def describe(change: ClubChange, now: datetime) -> dict[str, Any]:
    return {
        "id": change.id,
        "subscription_id": change.subscription_id,
        "club_id": change.club_id,
        "target_subscription_id": change.target_subscription_id,
        "target_club_id": change.target_club_id,
        "target_reactivated": change.reactivated,
        "when": change.when.value,
        "effective_at": change.effective_at.isoformat(),
        "state": change.state(now).value,
        "created_at": change.created_at.isoformat(),
        "cancelled_at": change.cancelled_at.isoformat() if change.cancelled_at else None,
        "cancel_reason": change.cancel_reason,
    }


def describe_outcome(outcome: ChangeOutcome, now: datetime) -> dict[str, Any]:
    first = outcome.first_charge
    body = describe(outcome.change, now)
    if outcome.preview:
        # Nothing was written: the ids a change would get are not promised.
        body.update(id=None, state="preview")
        if not outcome.change.reactivated:
            body["target_subscription_id"] = None
    body.update(
        preview=outcome.preview,
        target_schedule={
            "interval": first.schedule.interval.value,
            "anniversary": first.schedule.anniversary,
        },
        first_charge={
            "period": first.period.key,
            "billing_date": first.period.billing_date.isoformat(),
            "store_sku": first.sku,
            "already_charged": first.already_charged,
        },
        moved_period=outcome.moved_period,
        replaced=outcome.replaced.id if outcome.replaced else None,
    )
    return body
