"""The values of a forecast (domain/forecast.py has the rules): what it reads about a
subscription beside the plan, the members' club changes taking effect, and its lines."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from domain import schedules
from domain.billing import CardReport
from domain.charges import Charge, ChargeTarget
from domain.model import AUTOMATIC_RETURN_DETAILS, SubscriptionStatus

# The forecast's actions beyond the plan's steps (charge, abandon).
RETRY = "retry"
CANCEL = "cancel: "  # + why: "window closing", "card unavailable"
# A cancellation the run's breaker will hold (docs/money-path.md): nobody is cancelled.
HELD = "cancel held: "  # + why
# Members' club changes (docs/club-changes.md) the run at the instant acts on.
JOINS = "club change: joins"
LEAVES = "club change: leaves"
# The reason of the target subscription's charge line: "club change from club 3 (...)".
FROM_CLUB = "club change from club "
RETURNS = "returns from pause"


@dataclass(frozen=True)
class Inputs:
    """What settle reads about one subscription, plus what the forecast reports with it."""

    target: ChargeTarget
    # Its ledger rows by period (the current one and any earlier one).
    ledgers: dict[str, Charge]
    card: CardReport | None
    club_id: int | None = None
    since: datetime | None = None
    since_details: str | None = None
    status_before: int | None = None

    def with_card(self, card: CardReport) -> Inputs:
        return replace(self, card=card)

    def returns_from_pause(self, at: datetime) -> bool:
        """ACTIVE again since the previous daily run, after a pause."""
        if self.since is None or self.since <= at - timedelta(days=1):
            return False
        return (
            self.status_before == SubscriptionStatus.PAUSED
            or self.since_details == AUTOMATIC_RETURN_DETAILS
        )


@dataclass(frozen=True)
class Line:
    """One subscription in a forecast: the action, and for a charge which attempt."""

    subscription_id: str
    club_id: int | None
    sku: int | None
    period: str
    action: str
    attempt: int | None = None
    max_attempts: int | None = None
    reason: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "club_id": self.club_id,
            "sku": self.sku,
            "period": self.period,
            "action": self.action,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "reason": self.reason,
        }

    @classmethod
    def from_row(cls, row: Any) -> Line:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subscription_id, self.period, self.action)

    def also_counted_as(self) -> str | None:
        """The summary's second count for this line, beside its action."""
        if self.reason == RETURNS:
            return RETURNS
        if self.reason and self.reason.startswith(FROM_CLUB):
            return JOINS
        return None


@dataclass(frozen=True)
class ClubChangeTaking:
    """A member's club change the run at the forecast's instant acts on: it took effect
    since the previous daily run, or earlier and no run has recorded it yet."""

    id: str
    subscription_id: str
    club_id: int | None
    sku: int | None
    schedule: schedules.Schedule
    started: datetime | None
    target_subscription_id: str
    target_club_id: int
    target_sku: int | None
    target_schedule: schedules.Schedule
    target_started: datetime | None
    effective_at: datetime
    reactivated: bool
    # No run has recorded it yet: the run's sweep will (and abandon `unpaid`).
    unrecorded: bool
    # The old subscription's declined or platform-failed periods (state failed or error).
    unpaid: tuple[str, ...] = ()

    def left_period(self) -> str:
        """The old club's period at the instant: the one it does not charge."""
        period = schedules.period_in_effect(self.schedule, self.effective_at, self.started)
        return period.key if period is not None else "-"

    def first_period(self) -> str:
        """The target club's first period (billed as for a member who joined then)."""
        anchor = self.target_started or self.effective_at
        period = schedules.period_in_effect(self.target_schedule, self.effective_at, anchor)
        return period.key if period is not None else "-"
