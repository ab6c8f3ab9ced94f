"""The values the read endpoints pass between storage and the domain (GET /clubs,
GET /club/{id}, GET /subscription/{id}): plain data, no rules but `opens_at`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.charges import Charge
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


def opens_when(status_id: int | None, next_status_id: int | None, next_at):
    """When a club that does not accept subscriptions now will: its next change's instant,
    if that change makes it ACTIVE; None when it is open already or no opening is next."""
    if status_id == ClubStatus.ACTIVE or next_status_id != ClubStatus.ACTIVE:
        return None
    return next_at


def opens_at(status_id: int | None, next_change: HistoryRow | None) -> datetime | None:
    if next_change is None:
        return None
    return opens_when(status_id, next_change.status_id, next_change.effect_date)


# GET /clubs reads a thousand clubs: plain tuples, timestamps already as ISO 8601 text
# (built by the database), cost a fraction of objects. (id, name, sku, status_id, since,
# next_status_id, next_effect_date)
ClubListRow = tuple[int, str | None, int | None, int | None, str | None, int | None, str | None]


@dataclass(frozen=True)
class SubscriptionRecord:
    """What the repository reads about a subscription, in one statement: the row, its club
    and schedule, its dated history in the current-status rule's order (newest first), and
    its ledger rows that are not settled or were created since a given instant."""

    id: str
    customer_id: str | None
    create_date: datetime | None
    club: ClubInfo | None
    club_status_id: int | None
    schedule: Schedule
    history: tuple[HistoryRow, ...] = ()
    ledger: tuple[Charge, ...] = ()
