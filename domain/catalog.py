"""The clubs as the website shows them: which a visitor may join now, and each one's
status over time (a club not yet open says when it opens)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import errors
from domain.model import ClubStatus
from domain.ports import UnitOfWork
from domain.read_model import ClubInfo, ClubListRow, HistoryRow, opens_at
from domain.timelines import timeline

# `GET /clubs?status=`: a status name, NONE (no current status: not open yet, or never
# opened) or ALL. The default lists the clubs that accept new subscriptions.
ALL, NONE = "ALL", "NONE"
FILTERS = (*(s.name for s in ClubStatus), NONE, ALL)


@dataclass(frozen=True)
class ClubDetail:
    club: ClubInfo
    status_id: int | None
    since: datetime | None
    scheduled: tuple[HistoryRow, ...]

    @property
    def next_change(self) -> HistoryRow | None:
        return self.scheduled[0] if self.scheduled else None

    @property
    def opens_at(self) -> datetime | None:
        return opens_at(self.status_id, self.next_change)


def list_clubs(
    uow: UnitOfWork, now: datetime, status: str = ClubStatus.ACTIVE.name
) -> list[ClubListRow]:
    """Clubs by id whose current status matches `status` (one of FILTERS)."""
    if status == ALL:
        wanted: int | None | str = ALL
    elif status == NONE:
        wanted = None
    else:
        wanted = int(ClubStatus[status])
    with uow:
        return uow.views.clubs(now, wanted)


def club(uow: UnitOfWork, club_id: int, now: datetime) -> ClubDetail:
    with uow:
        info = uow.views.club(club_id)
        if info is None:
            raise errors.ClubNotFound(club_id)
        rows = uow.views.club_history(club_id)
    now_and_later = timeline(rows, now)
    return ClubDetail(info, now_and_later.status_id, now_and_later.since, now_and_later.scheduled)
