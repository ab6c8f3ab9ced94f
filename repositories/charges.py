"""The charge ledger. Statements are built once per container and each write that always
goes with another (a ledger row and its attempt) is one round trip: this path runs once
per subscription and month, a million times, and its cost should be the platform's."""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import DateTime, bindparam, func, select, text, union_all, update
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
        _SCHEDULE.c.changed_at,
        _SCHEDULE.c.previous_interval,
        _SCHEDULE.c.previous_anniversary,
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
    ChargeRow.declined_at,
    ChargeRow.paid_request_id,
    ChargeRow.outcome_at,
)
_COLUMNS = ", ".join(column.key for column in _ROW)

_FIND_FOR_UPDATE = text(
    f"SELECT {_COLUMNS} FROM charge"
    " WHERE subscription_id = :subscription_id AND period = :period FOR UPDATE"
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
        WHERE id = :charge_id AND state = :expected AND attempts = :attempts
        RETURNING {_COLUMNS}
    ), attempt AS (
        INSERT INTO charge_attempt (charge_id, attempt, request_id, started_at)
        SELECT id, attempts, request_id, :now FROM updated
    )
    SELECT {_COLUMNS} FROM updated
    """
)

# The attempt's answer is kept whenever the attempt still owns the row (a webhook may have
# settled it first: then only its state stays); the state moves only from pending. A
# decline opens the retry window (declined_at); a success names the order that paid.
_RECORD = text(
    f"""
    WITH attempt AS (
        UPDATE charge_attempt SET finished_at = :now, outcome = :state,
            platform_status = :status, platform_body = :body, error = :error
        WHERE charge_id = :charge_id AND attempt = :attempts
    )
    UPDATE charge SET
        state = CASE WHEN state = :pending THEN :state ELSE state END,
        declined_at = CASE WHEN state = :pending AND :state = 'failed'
            THEN coalesce(declined_at, :now) ELSE declined_at END,
        paid_request_id = CASE WHEN state = :pending AND :state = 'succeeded'
            THEN request_id ELSE paid_request_id END,
        platform_status = coalesce(:status, platform_status),
        platform_body = coalesce(:body, platform_body),
        failure_reason = CASE WHEN state = :pending THEN :error ELSE failure_reason END,
        updated_at = :now
    WHERE id = :charge_id AND attempts = :attempts AND request_id = :request_id
    RETURNING {_COLUMNS}
    """
)

_ANOMALY = text(
    """
    INSERT INTO charge_anomaly (kind, charge_id, subscription_id, period, request_id,
        paid_request_id, event_id, detected_at, detected_by, details)
    VALUES (:kind, :charge_id, :subscription_id, :period, :request_id, :paid_request_id,
        :event_id, :detected_at, :detected_by, :details)
    ON CONFLICT (kind, charge_id, request_id) DO NOTHING
    RETURNING id
    """
)


# Two index lookups (the row's own request id, its attempts' ids): an OR of the two made
# PostgreSQL scan the whole ledger for every webhook.
_REQUEST_ID = bindparam("request_id")
_SENT = ChargeRow.__table__.alias("sent")
_BY_REQUEST_ID = (
    select(*_ROW)
    .where(
        ChargeRow.id.in_(
            union_all(
                select(_SENT.c.id).where(_SENT.c.request_id == _REQUEST_ID),
                select(ChargeAttempt.charge_id).where(ChargeAttempt.request_id == _REQUEST_ID),
            )
        )
    )
    .limit(1)
)
_BY_REQUEST_ID_LOCKED = _BY_REQUEST_ID.with_for_update(of=ChargeRow)


def _interval(interval: str | None) -> schedules.Interval:
    try:
        return schedules.Interval(interval) if interval else schedules.Interval.MONTHLY
    except ValueError:
        return schedules.Interval.MONTHLY


@functools.lru_cache(maxsize=4096)
def schedule_of(
    interval: str | None,
    anniversary: bool | None,
    changed_at: datetime | None = None,
    previous_interval: str | None = None,
    previous_anniversary: bool | None = None,
) -> schedules.Schedule:
    """A schedule row's values as the domain's Schedule (no row: the default). Cached: a
    run builds one per eligible subscription from a thousand clubs' rows."""
    previous = schedules.Schedule(_interval(previous_interval), bool(previous_anniversary))
    return schedules.Schedule(_interval(interval), bool(anniversary), changed_at, previous)


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
        *target, interval, anniversary, started, changed_at, prev_interval, prev_anniv = row
        schedule = schedule_of(interval, anniversary, changed_at, prev_interval, prev_anniv)
        return ChargeTarget(*target, schedule, started)

    def find_for_update(self, subscription_id: str, period: str) -> Charge | None:
        row = self._execute(
            _FIND_FOR_UPDATE, {"subscription_id": subscription_id, "period": period}
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
        self, charge: Charge, request_id: str, target: ChargeTarget, now: datetime
    ) -> Charge | None:
        """A new attempt on a row still in the state (and attempt) read; None if moved."""
        row = self._execute(
            _BEGIN_ATTEMPT,
            {
                "charge_id": charge.id,
                "expected": charge.state.value,
                "attempts": charge.attempts,
                "request_id": request_id,
                "pending": ChargeState.PENDING.value,
                "customer_store_id": target.customer_id,
                "store_sku": target.sku_id,
                "now": now,
            },
        ).first()
        return _charge(row) if row else None

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
                "request_id": charge.request_id,
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
        statement = _BY_REQUEST_ID_LOCKED if lock else _BY_REQUEST_ID
        row = self.connection.execute(statement, {"request_id": request_id}).first()
        return _charge(row) if row else None

    def transition(
        self,
        charge: Charge,
        state: ChargeState,
        now: datetime,
        *,
        reason: str | None = None,
        paid_request_id: str | None = None,
        outcome_at: datetime | None = None,
    ) -> Charge | None:
        """Move a row from the state, request id and attempt it was read in; None when
        another writer moved it first (the caller re-reads and decides again)."""
        values: dict = {"state": state.value, "failure_reason": reason, "updated_at": now}
        if state == ChargeState.SUCCEEDED:
            values["paid_request_id"] = paid_request_id or charge.request_id
        if outcome_at is not None:
            values["outcome_at"] = outcome_at
        if state == ChargeState.FAILED:
            values["declined_at"] = func.coalesce(ChargeRow.declined_at, now)
        row = self.connection.execute(
            update(ChargeRow)
            .where(
                ChargeRow.id == charge.id,
                ChargeRow.state == charge.state.value,
                ChargeRow.request_id == charge.request_id,
                ChargeRow.attempts == charge.attempts,
            )
            .values(**values)
            .returning(*_ROW)
        ).first()
        return _charge(row) if row else None

    def add_anomaly(self, anomaly) -> bool:
        row = self._execute(
            _ANOMALY,
            {
                "kind": anomaly.kind.value,
                "charge_id": anomaly.charge_id,
                "subscription_id": anomaly.subscription_id,
                "period": anomaly.period,
                "request_id": anomaly.request_id,
                "paid_request_id": anomaly.paid_request_id,
                "event_id": anomaly.event_id,
                "detected_at": anomaly.detected_at,
                "detected_by": anomaly.detected_by,
                "details": anomaly.details,
            },
        ).first()
        return row is not None

    def find(self, subscription_id: str, period: str, *, lock: bool = True) -> Charge | None:
        stmt = select(*_ROW).where(
            ChargeRow.subscription_id == subscription_id, ChargeRow.period == period
        )
        if lock:
            stmt = stmt.with_for_update()
        row = self.connection.execute(stmt).first()
        return _charge(row) if row else None

    def unsettled(self, subscription_id: str) -> list[Charge]:
        """Every row of the subscription not yet succeeded or abandoned, oldest first."""
        rows = self.connection.execute(
            select(*_ROW)
            .where(
                ChargeRow.subscription_id == subscription_id,
                ChargeRow.state.in_(("pending", "failed", "unknown", "error")),
            )
            .order_by(ChargeRow.billing_date, ChargeRow.id)
        )
        return [_charge(row) for row in rows]

    def latest_paid(self, subscription_id: str) -> datetime | None:
        """The billing date of the subscription's latest paid period."""
        return self.connection.scalar(
            select(func.max(ChargeRow.billing_date)).where(
                ChargeRow.subscription_id == subscription_id, ChargeRow.state == "succeeded"
            )
        )
