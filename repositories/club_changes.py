"""Club changes (domain/club_changes.py): the `club_change` rows and what a change reads
and writes around them. Every state move is a guarded UPDATE (`WHERE state = ...`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from domain import schedules
from domain.club_change_model import ClubChange, When
from domain.model import Subscription
from repositories.charges import schedule_of
from repositories.subscriptions import supersede
from repositories.tables import (
    BillingSchedule,
    Club,
    SubscriptionStatusHistory,
)
from repositories.tables import Charge as ChargeRow
from repositories.tables import ClubChange as ClubChangeRow
from repositories.tables import Subscription as SubscriptionRow

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
# How many applied changes one sweep records (the next run takes the rest).
SWEEP_BATCH = 1000


def _change(row) -> ClubChange:
    return ClubChange(
        id=row.id,
        subscription_id=row.subscription_id,
        club_id=row.club_id,
        target_subscription_id=row.target_subscription_id,
        target_club_id=row.target_club_id,
        customer_id=row.customer_store_id,
        when=When(row.when_mode),
        effective_at=row.effective_at,
        reactivated=row.reactivated,
        cancel_row_id=row.cancel_row_id,
        activate_row_id=row.activate_row_id,
        history_rows=row.history_rows,
        created_at=row.created_at,
        cancelled=row.state == CANCELLED,
        cancelled_at=row.cancelled_at,
        cancel_reason=row.cancel_reason,
        applied_recorded_at=row.applied_recorded_at,
    )


def _history_count(ids):
    h = SubscriptionStatusHistory
    return select(func.count()).select_from(h.__table__).where(h.subscription_id.in_(ids))


class SqlAlchemyClubChangeRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _changes(self, stmt) -> list[ClubChange]:
        return [_change(row) for row in self.connection.execute(stmt)]

    # --- reading changes -----------------------------------------------------------------

    def get(self, change_id: str, *, lock: bool = False) -> ClubChange | None:
        stmt = select(ClubChangeRow).where(ClubChangeRow.id == change_id)
        if lock:
            stmt = stmt.with_for_update()
        found = self._changes(stmt)
        return found[0] if found else None

    def pending_from(self, subscription_id: str, now: datetime) -> ClubChange | None:
        c = ClubChangeRow
        found = self._changes(
            select(c)
            .where(c.subscription_id == subscription_id, c.state == SCHEDULED, c.effective_at > now)
            .order_by(c.created_at.desc(), c.id)
            .limit(1)
            .with_for_update()
        )
        return found[0] if found else None

    def pending_touching(self, subscription_id: str, now: datetime) -> list[ClubChange]:
        c = ClubChangeRow
        return self._changes(
            select(c)
            .where(
                (c.subscription_id == subscription_id)
                | (c.target_subscription_id == subscription_id),
                c.state == SCHEDULED,
                c.effective_at > now,
            )
            .order_by(c.id)
            .with_for_update()
        )

    def latest_from(self, subscription_id: str) -> ClubChange | None:
        c = ClubChangeRow
        found = self._changes(
            select(c)
            .where(c.subscription_id == subscription_id, c.state == SCHEDULED)
            .order_by(c.effective_at.desc(), c.created_at.desc())
            .limit(1)
        )
        return found[0] if found else None

    def interfered(self, now: datetime) -> list[ClubChange]:
        """Pending changes whose two subscriptions no longer hold the rows they had."""
        c = ClubChangeRow
        return self._changes(
            select(c).where(
                c.state == SCHEDULED,
                c.effective_at > now,
                c.history_rows
                != _history_count([c.subscription_id, c.target_subscription_id]).scalar_subquery(),
            )
        )

    def due_unrecorded(self, now: datetime) -> list[ClubChange]:
        c = ClubChangeRow
        return self._changes(
            select(c)
            .where(c.state == SCHEDULED, c.applied_recorded_at.is_(None), c.effective_at <= now)
            .order_by(c.effective_at, c.id)
            .limit(SWEEP_BATCH)
        )

    # --- what a change reads around it -----------------------------------------------------

    def current_row_id(self, subscription_id: str, at: datetime) -> str | None:
        h = SubscriptionStatusHistory
        return self.connection.scalar(
            select(h.id)
            .where(h.subscription_id == subscription_id, h.effect_date <= at)
            .order_by(h.effect_date.desc(), h.create_date.desc().nulls_last(), h.id.desc())
            .limit(1)
        )

    def scheduled_effect_dates(self, subscription_id: str, now: datetime) -> list[datetime]:
        h = SubscriptionStatusHistory
        return list(
            self.connection.scalars(
                select(h.effect_date).where(
                    h.subscription_id == subscription_id, h.effect_date > now
                )
            )
        )

    def history_count(self, subscription_ids: Sequence[str]) -> int:
        return self.connection.scalar(_history_count(list(subscription_ids))) or 0

    def rows_exist(self, row_ids: Sequence[str]) -> bool:
        h = SubscriptionStatusHistory
        found = self.connection.scalar(
            select(func.count()).select_from(h.__table__).where(h.id.in_(list(row_ids)))
        )
        return found == len(set(row_ids))

    def schedule_of(self, club_id: int | None) -> schedules.Schedule:
        """The club's schedule with the one it replaced: a change takes effect at a period
        boundary, as billing applies it (schedules.period_in_effect)."""
        row = self.connection.execute(
            select(
                BillingSchedule.interval,
                BillingSchedule.anniversary,
                BillingSchedule.changed_at,
                BillingSchedule.previous_interval,
                BillingSchedule.previous_anniversary,
            ).where(BillingSchedule.club_id == club_id)
        ).first()
        return schedule_of(*row) if row else schedules.DEFAULT

    def sku_of(self, club_id: int | None) -> int | None:
        return self.connection.scalar(select(Club.store_sku).where(Club.id == club_id))

    def started(self, subscription_id: str) -> datetime | None:
        return self.connection.scalar(
            select(SubscriptionRow.create_date).where(SubscriptionRow.id == subscription_id)
        )

    def ledger_has(self, subscription_id: str, period: str) -> bool:
        return bool(
            self.connection.scalar(
                select(
                    exists().where(
                        ChargeRow.subscription_id == subscription_id, ChargeRow.period == period
                    )
                )
            )
        )

    # --- writes -----------------------------------------------------------------------------

    def reserve_period(
        self,
        subscription: Subscription,
        period: schedules.Period,
        request_id: str,
        now: datetime,
        reason: str,
        sku: int | None,
    ) -> bool:
        """Close a period that moves to another club with a ledger row that is never sent
        (state abandoned, no attempt); False when the period already has a row."""
        inserted = self.connection.execute(
            pg_insert(ChargeRow)
            .values(
                subscription_id=subscription.id,
                period=period.key,
                request_id=request_id,
                state="abandoned",
                attempts=0,
                customer_store_id=subscription.customer_id,
                store_sku=sku,
                created_at=now,
                updated_at=now,
                last_attempt_at=now,
                billing_date=period.billing_date,
                failure_reason=reason,
            )
            .on_conflict_do_nothing(index_elements=["subscription_id", "period"])
            .returning(ChargeRow.id)
        ).first()
        return inserted is not None

    def add(self, change: ClubChange) -> None:
        self.connection.execute(
            insert(ClubChangeRow).values(
                id=change.id,
                subscription_id=change.subscription_id,
                club_id=change.club_id,
                target_subscription_id=change.target_subscription_id,
                target_club_id=change.target_club_id,
                customer_store_id=change.customer_id,
                when_mode=change.when.value,
                effective_at=change.effective_at,
                reactivated=change.reactivated,
                cancel_row_id=change.cancel_row_id,
                activate_row_id=change.activate_row_id,
                history_rows=change.history_rows,
                state=SCHEDULED,
                created_at=change.created_at,
            )
        )

    def mark_cancelled(self, change_id: str, now: datetime, reason: str) -> bool:
        c = ClubChangeRow
        return (
            self.connection.execute(
                update(c)
                .where(c.id == change_id, c.state == SCHEDULED)
                .values(state=CANCELLED, cancelled_at=now, cancel_reason=reason)
            ).rowcount
            == 1
        )

    def mark_applied(self, change_id: str, now: datetime) -> bool:
        c = ClubChangeRow
        return (
            self.connection.execute(
                update(c)
                .where(
                    c.id == change_id,
                    c.state == SCHEDULED,
                    c.applied_recorded_at.is_(None),
                    c.effective_at <= now,
                )
                .values(applied_recorded_at=now)
            ).rowcount
            == 1
        )

    def supersede_rows(
        self, row_ids: Sequence[str], now: datetime, superseded_by: str, reason: str
    ) -> list[str]:
        """Move these scheduled rows to superseded_status_change, as every superseded
        scheduled change is kept."""
        rows = SubscriptionStatusHistory.id.in_(list(row_ids))
        return supersede(self.connection, rows, now, superseded_by, reason)

    def discard_unstarted(self, subscription_id: str) -> bool:
        """Delete a subscription made for a change that never started (its claim goes with
        it), unless it has a history row or a ledger row."""
        return self.connection.execute(_DISCARD, {"subscription_id": subscription_id}).rowcount == 1

    def abandon_failed(
        self, subscription_id: str, now: datetime, reason: str
    ) -> list[tuple[int, str, str, int]]:
        """Declined periods (failed) and periods that met only platform failures (error)
        of a subscription that was left: final, never retried, nobody cancelled. A guarded
        transition: only a row still failed or error moves (never unknown, pending or
        paid: those are the money path's and reconciliation's)."""
        rows = self.connection.execute(
            update(ChargeRow)
            .where(
                ChargeRow.subscription_id == subscription_id,
                ChargeRow.state.in_(("failed", "error")),
            )
            .values(state="abandoned", failure_reason=reason, updated_at=now)
            .returning(ChargeRow.id, ChargeRow.period, ChargeRow.request_id, ChargeRow.attempts)
        )
        return [tuple(row) for row in rows]


_DISCARD = text(
    """
    DELETE FROM subscription s
    WHERE s.id = :subscription_id
      AND NOT EXISTS (SELECT 1 FROM subscription_status_history h WHERE h.subscription_id = s.id)
      AND NOT EXISTS (SELECT 1 FROM charge c WHERE c.subscription_id = s.id)
    """
)
