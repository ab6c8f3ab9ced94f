"""The registry of request ids sent to the platform: one subject per id, forever.

Any feature that sends the platform a request id (charges today; a promo's completion
later) claims it here first, with its own `kind`, in the transaction that records the
request, so two subjects can never share one order at the platform.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

_CLAIM = text(
    """
    WITH claimed AS (
        INSERT INTO platform_request (request_id, kind, subject, created_at)
        VALUES (:request_id, :kind, :subject, :now)
        ON CONFLICT (request_id) DO NOTHING
        RETURNING kind, subject
    )
    SELECT kind, subject FROM claimed
    UNION ALL
    SELECT kind, subject FROM platform_request WHERE request_id = :request_id
    LIMIT 1
    """
)
_HOLDER = text("SELECT kind, subject FROM platform_request WHERE request_id = :request_id")


class SqlAlchemyPlatformRequestRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def claim(self, request_id: str, kind: str, subject: str, now: datetime) -> bool:
        """Register `request_id` for (kind, subject); False if it belongs to another one.

        One round trip; a conflict with a claim committed after this statement's
        snapshot began is read again by a second statement."""
        params = {"request_id": request_id, "kind": kind, "subject": subject, "now": now}
        row = self.connection.execute(_CLAIM, params).first()
        if row is None:
            row = self.connection.execute(_HOLDER, params).first()
        return row is not None and (row.kind, row.subject) == (kind, subject)

    def subject_of(self, request_id: str) -> tuple[str, str] | None:
        row = self.connection.execute(_HOLDER, {"request_id": request_id}).first()
        return (row.kind, row.subject) if row else None
