from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from domain import schedules
from domain.charges import Charge, ChargeState, ChargeTarget
from repositories.status_rule import CLUBS, SUBSCRIPTIONS
from repositories.tables import BillingSchedule, ChargeAttempt, Club
from repositories.tables import Charge as ChargeRow
from repositories.tables import Subscription as SubscriptionRow

_COLUMNS = (
    ChargeRow.id,
    ChargeRow.subscription_id,
    ChargeRow.period,
    ChargeRow.request_id,
    ChargeRow.state,
    ChargeRow.attempts,
    ChargeRow.platform_status,
    ChargeRow.platform_body,
    ChargeRow.created_at,
    ChargeRow.updated_at,
    ChargeRow.last_attempt_at,
    ChargeRow.billing_date,
    ChargeRow.failure_reason,
)


def schedule_of(interval: str | None, anniversary: bool | None) -> schedules.Schedule:
    """A schedule row's values as the domain's Schedule (no row: the default)."""
    try:
        parsed = schedules.Interval(interval) if interval else schedules.Interval.MONTHLY
    except ValueError:
        parsed = schedules.Interval.MONTHLY
    return schedules.Schedule(parsed, bool(anniversary))


def _charge(row) -> Charge:
    values = row._asdict()
    values["state"] = ChargeState(values["state"])
    return Charge(**values)


class SqlAlchemyChargeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def target(self, subscription_id: str, at: datetime) -> ChargeTarget | None:
        row = self.session.execute(
            select(
                SubscriptionRow.id,
                SubscriptionRow.customer_store_id,
                Club.store_sku,
                SUBSCRIPTIONS.status_of(SubscriptionRow.id, at),
                CLUBS.status_of(SubscriptionRow.club_id, at),
                BillingSchedule.interval,
                BillingSchedule.anniversary,
                SubscriptionRow.create_date,
            )
            .outerjoin(Club, Club.id == SubscriptionRow.club_id)
            .outerjoin(BillingSchedule, BillingSchedule.club_id == SubscriptionRow.club_id)
            .where(SubscriptionRow.id == subscription_id)
        ).first()
        if row is None:
            return None
        *target, interval, anniversary, started = row
        return ChargeTarget(*target, schedule_of(interval, anniversary), started)

    def find_for_update(self, subscription_id: str, period: str) -> Charge | None:
        row = self.session.execute(
            select(*_COLUMNS)
            .where(ChargeRow.subscription_id == subscription_id, ChargeRow.period == period)
            .with_for_update()
        ).first()
        return _charge(row) if row else None

    def create_pending(
        self,
        target: ChargeTarget,
        period: str,
        request_id: str,
        now: datetime,
        billing_date: datetime | None = None,
    ) -> Charge | None:
        row = self.session.execute(
            pg_insert(ChargeRow)
            .values(
                subscription_id=target.subscription_id,
                period=period,
                request_id=request_id,
                state=ChargeState.PENDING.value,
                attempts=1,
                customer_store_id=target.customer_id,
                store_sku=target.sku_id,
                created_at=now,
                updated_at=now,
                last_attempt_at=now,
                billing_date=billing_date,
            )
            .on_conflict_do_nothing(index_elements=["subscription_id", "period"])
            .returning(*_COLUMNS)
        ).first()
        if row is None:
            return None
        charge = _charge(row)
        self._log_attempt(charge, now)
        return charge

    def begin_attempt(
        self, charge_id: int, request_id: str, target: ChargeTarget, now: datetime
    ) -> Charge:
        row = self.session.execute(
            update(ChargeRow)
            .where(ChargeRow.id == charge_id)
            .values(
                state=ChargeState.PENDING.value,
                attempts=ChargeRow.attempts + 1,
                request_id=request_id,
                customer_store_id=target.customer_id,
                store_sku=target.sku_id,
                updated_at=now,
                last_attempt_at=now,
                failure_reason=None,
            )
            .returning(*_COLUMNS)
        ).one()
        charge = _charge(row)
        self._log_attempt(charge, now)
        return charge

    def _log_attempt(self, charge: Charge, now: datetime) -> None:
        self.session.execute(
            insert(ChargeAttempt).values(
                charge_id=charge.id,
                attempt=charge.attempts,
                request_id=charge.request_id,
                started_at=now,
            )
        )

    def record(
        self,
        charge: Charge,
        state: ChargeState,
        status: int | None,
        body: str | None,
        error: str | None,
        now: datetime,
    ) -> Charge | None:
        self.session.execute(
            update(ChargeAttempt)
            .where(ChargeAttempt.charge_id == charge.id, ChargeAttempt.attempt == charge.attempts)
            .values(
                finished_at=now,
                outcome=state.value,
                platform_status=status,
                platform_body=body,
                error=error,
            )
        )
        # Only the attempt that still owns the row may settle it: a slower, superseded
        # attempt leaves its answer in charge_attempt alone.
        row = self.session.execute(
            update(ChargeRow)
            .where(
                ChargeRow.id == charge.id,
                ChargeRow.attempts == charge.attempts,
                ChargeRow.state == ChargeState.PENDING.value,
            )
            .values(state=state.value, platform_status=status, platform_body=body, updated_at=now)
            .returning(*_COLUMNS)
        ).first()
        return _charge(row) if row else None

    def find_by_request_id(self, request_id: str, *, lock: bool = True) -> Charge | None:
        """The ledger row of an order we sent, by any request id one of its attempts used."""
        stmt = select(*_COLUMNS).where(
            (ChargeRow.request_id == request_id)
            | ChargeRow.id.in_(
                select(ChargeAttempt.charge_id).where(ChargeAttempt.request_id == request_id)
            )
        )
        if lock:
            stmt = stmt.with_for_update(of=ChargeRow)
        row = self.session.execute(stmt.limit(1)).first()
        return _charge(row) if row else None

    def settle(
        self, charge_id: int, state: ChargeState, reason: str | None, now: datetime
    ) -> Charge:
        """Set a row's state from outside an attempt (a platform event, the retry window)."""
        row = self.session.execute(
            update(ChargeRow)
            .where(ChargeRow.id == charge_id)
            .values(state=state.value, failure_reason=reason, updated_at=now)
            .returning(*_COLUMNS)
        ).one()
        return _charge(row)
