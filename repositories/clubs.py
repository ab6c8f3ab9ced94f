from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from repositories.status_rule import current_club_status
from repositories.tables import Club, ClubStatusHistory


class SqlAlchemyClubRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def exists(self, club_id: int) -> bool:
        return self.connection.scalar(select(Club.id).where(Club.id == club_id)) is not None

    def current_status(self, club_id: int, at: datetime) -> int | None:
        stmt = current_club_status(at, ClubStatusHistory.club_id == club_id)
        row = self.connection.execute(stmt).first()
        return row.status_id if row else None
