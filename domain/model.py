"""Plain values of the business: statuses, subscriptions, history rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum


class SubscriptionStatus(IntEnum):
    ACTIVE = 1
    CANCELLED = 2
    PAUSED = 3


class ClubStatus(IntEnum):
    ACTIVE = 1
    CLOSED = 2
    INACTIVE = 3


# Members of a closed club keep receiving; an inactive club ships nothing.
SHIPPING_CLUB_STATUSES = frozenset({ClubStatus.ACTIVE, ClubStatus.CLOSED})
AUTOMATIC_RETURN_DETAILS = "Automatic return schedule"
SUPERSEDED_REASON = "superseded by status change {new_id}"


def status_name(enum: type[IntEnum], status_id: int | None) -> str | None:
    """The English name of a status id, or None for a missing or operator-added id."""
    if status_id is None:
        return None
    try:
        return enum(status_id).name
    except ValueError:
        return None


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Subscription:
    id: str
    club_id: int | None
    customer_id: str | None
    create_date: datetime | None
    status_id: int | None = None


@dataclass(frozen=True)
class StatusChange:
    id: str
    subscription_id: str
    status_id: int
    effect_date: datetime
    create_date: datetime
    details: str | None
