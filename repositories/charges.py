"""The charge ledger. Statements are built once per container and each write that always
goes with another (a ledger row and its attempt) is one round trip: this path runs once
per subscription and month, a million times, and its cost should be the platform's."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, bindparam, select, text, update
from sqlalchemy.engine import Connection

from domain import schedules
from domain.charges import Charge, ChargeState, ChargeTarget
from repositories.status_rule import CLUBS, SUBSCRIPTIONS
from repositories.tables import BillingSchedule, ChargeAttempt, Club
from repositories.tables import Charge as ChargeRow
from repositories.tables import Subscription as SubscriptionRow

_AT = bindparam("at", type_=DateTime)
_SUBSCRIPTION = SubscriptionRow.__table__
_CLUB = Club.__table__
_SCHEDULE = BillingSchedule.__table__

_TARGET = (
    select(
        _SUBSCRIPTION.c.id,
        _SUBSCRIPTION.c.customer_store_id,
        _CLUB.c.store_sku,
        SUBSCRIPTIONS.status_of(_SUBSCRIPTION.c.id, _AT),
        CLUBS.status_of(_SUBSCRIPTION.c.club_id, _AT),
        _SCHEDULE.c.interval,
        _SCHEDULE.c.anniversary,
        _SUBSCRIPTION.c.create_date,
    )
    .select_from(_SUBSCRIPTION)
    .outerjoin(_CLUB, _CLUB.c.id == _SUBSCRIPTION.c.club_id)
    .outerjoin(_SCHEDULE, _SCHEDULE.c.club_id == _SUBSCRIPTION.c.club_id)
    .where(_SUBSCRIPTION.c.id == bindparam("subscription_id"))
)

_ROW = (
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
_COLUMNS = ", ".join(column.key for column in _ROW)

_FIND_FOR_UPDATE = text(
    f"SELECT {_COLUMNS} FROM charge"
    " WHERE subscription_id = :subscription_id AND period = :period FOR UPDATE"
)

_OPEN_BEFORE = text(
    f"SELECT {_COLUMNS} FROM charge"
    " WHERE subscription_id = :subscription_id AND period <> :period"
    " AND state IN ('pending', 'failed', 'unknown')"
    " ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE"
)

# The ledger row and its first attempt, together; nothing at all when the month's row exists.
_CREATE_PENDING = text(
    f"""
    WITH created AS (
        INSERT INTO charge (subscription_id, period, request_id, state, attempts,
            customer_store_id, store_sku, created_at, updated_at, last_attempt_at, billing_date)
        VALUES (:subscription_id, :period, :request_id, :pending, 1,
            :customer_store_id, :store_sku, :now, :now, :now, :billing_date)
        ON CONFLICT (subscription_id, period) DO NOTHING
        RETURNING {_COLUMNS}
    ), attempt AS (
        INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at)
        SELECT id, attempts, request_id, :now FROM created
    )
    SELECT {_COLUMNS} FROM created
    """
)

_BEGIN_ATTEMPT = text(
    f"""
    WITH updated AS (
        UPDATE charge SET state = :pending, attempts = attempts + 1, request_id = :request_id,
            customer_store_id = :customer_store_id, store_sku = :store_sku,
            updated_at = :now, last_attempt_at = :now, failure_reason = NULL
        WHERE id = :charge_id
        RETURNING {_COLUMNS}
    ), attempt AS (
        INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at)
        SELECT id, attempts, request_id, :now FROM updated
    )
    SELECT {_COLUMNS} FROM updated
    """
)

# Only the attempt that still owns the row may settle it: a slower, superseded attempt
# leaves its answer in charge_attempt alone.
_RECORD = text(
    f"""
    WITH attempt AS (
        UPDATE charge_attempt SET finished_at = :now, outcome = :state,
            platform_status = :status, platform_body = :body, error = :error
        WHERE charge_id = :charge_id AND attempt = :attempts
    )
    UPDATE charge SET state = :state, platform_status = :status, platform_body = :body,
        updated_at = :now
    WHERE id = :charge_id AND attempts = :attempts AND state = :pending
    RETURNING {_COLUMNS}
    """
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
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _execute(self, statement, params: dict):
        return self.connection.execute(statement, params)

    def target(self, subscription_id: str, at: datetime) -> ChargeTarget | None:
        row = self._execute(_TARGET, {"subscription_id": subscription_id, "at": at}).first()
        if row is None:
            return None
        *target, interval, anniversary, started = row
        return ChargeTarget(*target, schedule_of(interval, anniversary), started)

    def find_for_update(self, subscription_id: str, period: str) -> Charge | None:
        row = self._execute(
            _FIND_FOR_UPDATE, {"subscription_id": subscription_id, "period": period}
        ).first()
        return _charge(row) if row else None

    def open_before(self, subscription_id: str, period: str) -> Charge | None:
        """The latest charge of another period that neither succeeded nor was abandoned."""
        row = self._execute(
            _OPEN_BEFORE, {"subscription_id": subscription_id, "period": period}
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
        row = self._execute(
            _CREATE_PENDING,
            {
                "subscription_id": target.subscription_id,
                "period": period,
                "request_id": request_id,
                "pending": ChargeState.PENDING.value,
                "customer_store_id": target.customer_id,
                "store_sku": target.sku_id,
                "now": now,
                "billing_date": billing_date,
            },
        ).first()
        return _charge(row) if row else None

    def begin_attempt(
        self, charge_id: int, request_id: str, target: ChargeTarget, now: datetime
    ) -> Charge:
        row = self._execute(
            _BEGIN_ATTEMPT,
            {
                "charge_id": charge_id,
                "request_id": request_id,
                "pending": ChargeState.PENDING.value,
                "customer_store_id": target.customer_id,
                "store_sku": target.sku_id,
                "now": now,
            },
        ).one()
        return _charge(row)

    def record(
        self,
        charge: Charge,
        state: ChargeState,
        status: int | None,
        body: str | None,
        error: str | None,
        now: datetime,
    ) -> Charge | None:
        row = self._execute(
            _RECORD,
            {
                "charge_id": charge.id,
                "attempts": charge.attempts,
                "state": state.value,
                "status": status,
                "body": body,
                "error": error,
                "now": now,
                "pending": ChargeState.PENDING.value,
            },
        ).first()
        return _charge(row) if row else None

    def find_by_request_id(self, request_id: str, *, lock: bool = True) -> Charge | None:
        """The ledger row of an order we sent, by any request id one of its attempts used."""
        stmt = select(*_ROW).where(
            (ChargeRow.request_id == request_id)
            | ChargeRow.id.in_(
                select(ChargeAttempt.charge_id).where(ChargeAttempt.request_id == request_id)
            )
        )
        if lock:
            stmt = stmt.with_for_update(of=ChargeRow)
        row = self.connection.execute(stmt.limit(1)).first()
        return _charge(row) if row else None

    def settle(
        self, charge_id: int, state: ChargeState, reason: str | None, now: datetime
    ) -> Charge:
        """Set a row's state from outside an attempt (a platform event, the retry window)."""
        row = self.connection.execute(
            update(ChargeRow)
            .where(ChargeRow.id == charge_id)
            .values(state=state.value, failure_reason=reason, updated_at=now)
            .returning(*_ROW)
        ).one()
        return _charge(row)
