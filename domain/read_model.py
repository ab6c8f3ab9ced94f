"""The values the read endpoints pass between storage and the domain (GET /clubs,
GET /club/{id}, GET /subscription/{id}): plain data, no rules but `opens_at`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.model import ClubStatus
from domain.schedules import Schedule


@dataclass(frozen=True)
class HistoryRow:
    status_id: int | None
    effect_date: datetime
    details: str | None = None


@dataclass(frozen=True)
class ClubInfo:
    id: int
    name: str | None
    sku: int | None


def opens_at(status_id: int | None, next_change: HistoryRow | None) -> datetime | None:
    """When a club that does not accept subscriptions now will: its next change, if that
    makes it ACTIVE; None when it is open already or nothing opening is scheduled."""
    if status_id == ClubStatus.ACTIVE or next_change is None:
        return None
    return next_change.effect_date if next_change.status_id == ClubStatus.ACTIVE else None


@dataclass(frozen=True)
class ClubSummary:
    """A club with its current status and its next scheduled change (one query for all)."""

    club: ClubInfo
    status_id: int | None
    since: datetime | None
    next_change: HistoryRow | None

    @property
    def opens_at(self) -> datetime | None:
        return opens_at(self.status_id, self.next_change)


@dataclass(frozen=True)
class SubscriptionRecord:
    """What the repository reads about a subscription in one statement."""

    id: str
    customer_id: str | None
    create_date: datetime | None
    club: ClubInfo | None
    club_status_id: int | None
    schedule: Schedule
