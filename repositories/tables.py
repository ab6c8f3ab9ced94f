"""SQLAlchemy mapping of the approved tables and of the tables this service adds.

The approved tables are fixed (the approved data model): defaults here are client-side only,
and nothing here may add a constraint to them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB


def _uuid() -> str:
    return str(uuid.uuid4())


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


metadata = MetaData()


class _Table:
    """A Core table whose columns are also attributes (`Club.id` for `club.c.id`).

    Nothing here loads ORM objects: the declarative mapping of these fifteen classes cost
    about 60 ms of every function's cold start. SQLAlchemy takes the object wherever it
    takes the table (`__clause_element__`).
    """

    def __init__(self, name: str, *columns: Any) -> None:
        self.__table__ = Table(name, metadata, *columns)
        for column in self.__table__.c:
            setattr(self, column.key, column)

    def __clause_element__(self) -> Table:
        return self.__table__

    def __getattr__(self, name: str) -> Any:  # typing only: the columns are set above
        raise AttributeError(f"{self.__table__.name} has no column {name}")


Club = _Table(
    "club",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128)),
    Column("store_sku", Integer),
)


ClubStatusLookup = _Table(
    "club_status",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128)),
)


ClubStatusHistory = _Table(
    "club_status_history",
    Column("id", String(36), primary_key=True, default=_uuid),
    Column("club_id", ForeignKey("club.id", ondelete="RESTRICT")),
    Column("club_status_id", ForeignKey("club_status.id", ondelete="RESTRICT")),
    Column("effect_date", DateTime, default=_utcnow),
    Column("create_date", DateTime, default=_utcnow),
    Column("details", String(256)),
)


Subscription = _Table(
    "subscription",
    Column("id", String(36), primary_key=True, default=_uuid),
    Column("club_id", ForeignKey("club.id", ondelete="RESTRICT")),
    Column("customer_store_id", String(36)),
    Column("create_date", DateTime, default=_utcnow),
)


StatusLookup = _Table(
    "status",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128)),
)


SubscriptionStatusHistory = _Table(
    "subscription_status_history",
    Column("id", String(36), primary_key=True, default=_uuid),
    Column("subscription_id", ForeignKey("subscription.id", ondelete="RESTRICT")),
    Column("status_id", ForeignKey("status.id", ondelete="RESTRICT")),
    Column("effect_date", DateTime, default=_utcnow),
    Column("create_date", DateTime, default=_utcnow),
    Column("details", String(256)),
)


# One row per (club, customer) that subscribed through the API: the subscribe lock.
SubscriptionClaim = _Table(
    "subscription_claim",
    Column("club_id", Integer, primary_key=True),
    Column("customer_store_id", String(36), primary_key=True),
    Column(
        "subscription_id",
        ForeignKey("subscription.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        index=True,
    ),
    Column("created_at", DateTime, default=_utcnow),
)


# Scheduled status rows that a later change superseded, moved out of the history.
SupersededStatusChange = _Table(
    "superseded_status_change",
    Column("audit_id", BigInteger, Identity(), primary_key=True),
    Column("history_id", String(36)),
    Column("subscription_id", String(36), index=True),
    Column("status_id", Integer),
    Column("effect_date", DateTime),
    Column("create_date", DateTime),
    Column("details", String(256)),
    Column("superseded_at", DateTime),
    Column("superseded_by", String(36)),
    Column("reason", Text),
)


# The ledger: one row per subscription and billing period, written before calling out.
Charge = _Table(
    "charge",
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("subscription_id", String(36)),
    Column("period", String(16)),
    Column("request_id", String(36)),
    Column("state", String(16)),
    Column("attempts", Integer),
    Column("customer_store_id", String(36)),
    Column("store_sku", Integer),
    Column("platform_status", Integer),
    Column("platform_body", Text),
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
    Column("last_attempt_at", DateTime),
    Column("billing_date", DateTime),
    Column("failure_reason", Text),
    Column("declined_at", DateTime),
    Column("paid_request_id", String(36)),
    Column("outcome_at", DateTime),
    UniqueConstraint("subscription_id", "period"),
)


# Every call towards the platform and what came of it.
ChargeAttempt = _Table(
    "charge_attempt",
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("charge_id", ForeignKey("charge.id", ondelete="CASCADE")),
    Column("attempt", Integer),
    Column("request_id", String(36)),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("outcome", String(16)),
    Column("platform_status", Integer),
    Column("platform_body", Text),
    Column("error", Text),
)


# A club's billing schedule; a club without a row bills by calendar month.
BillingSchedule = _Table(
    "billing_schedule",
    Column("club_id", ForeignKey("club.id", ondelete="CASCADE"), primary_key=True),
    Column("interval", String(16), default="monthly"),
    Column("anniversary", Boolean, default=False),
    Column("updated_at", DateTime, default=_utcnow),
    Column("changed_at", DateTime),
    Column("previous_interval", String(16)),
    Column("previous_anniversary", Boolean),
)


ChargeRefund = _Table(
    "charge_refund",
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("charge_id", ForeignKey("charge.id", ondelete="CASCADE")),
    Column("event_id", String(128), unique=True),
    Column("request_id", String(64)),
    Column("amount", Numeric(12, 2)),
    Column("reason", Text),
    Column("refunded_at", DateTime),
    Column("recorded_at", DateTime),
)


# Every platform event received, by id; 'pending' ones wait for what they refer to.
WebhookEvent = _Table(
    "webhook_event",
    Column("event_id", String(128), primary_key=True),
    Column("type", String(32)),
    Column("request_id", String(64)),
    Column("customer_store_id", String(36)),
    Column("payload", JSONB),
    Column("state", String(16)),
    Column("received_at", DateTime),
    Column("applied_at", DateTime),
    Column("note", Text),
)


CardUnavailable = _Table(
    "card_unavailable",
    Column("customer_store_id", String(36), primary_key=True),
    Column("reason", String(32)),
    Column("reported_at", DateTime),
    Column("event_id", String(128)),
)


# Append-only: every money-related change and who or what caused it.
BillingAudit = _Table(
    "billing_audit",
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("occurred_at", DateTime),
    Column("action", String(32)),
    Column("actor", String(128)),
    Column("subscription_id", String(36)),
    Column("customer_store_id", String(36)),
    Column("period", String(16)),
    Column("charge_id", BigInteger),
    Column("request_id", String(64)),
    Column("details", Text),
)


# --- club changes (revision 0009) --------------------------------------------------------
# A member's move to another club: the two subscriptions and their two scheduled rows.
ClubChange = _Table(
    "club_change",
    Column("id", String(36), primary_key=True),
    Column("subscription_id", String(36)),
    Column("club_id", Integer),
    Column("target_subscription_id", String(36)),
    Column("target_club_id", Integer),
    Column("customer_store_id", String(36)),
    Column("when_mode", String(16)),
    Column("effective_at", DateTime),
    Column("reactivated", Boolean),
    Column("cancel_row_id", String(36)),
    Column("activate_row_id", String(36)),
    Column("history_rows", Integer),
    Column("state", String(16)),
    Column("created_at", DateTime),
    Column("cancelled_at", DateTime),
    Column("cancel_reason", Text),
    Column("applied_recorded_at", DateTime),
)


# Every request id sent to the platform and the one thing it charges (revision 0007).
PlatformRequest = _Table(
    "platform_request",
    Column("request_id", String(64), primary_key=True),
    Column("kind", String(16)),
    Column("subject", String(128)),
    Column("created_at", DateTime),
)


# Double charges, reversals and late payments: for review, never hidden.
ChargeAnomaly = _Table(
    "charge_anomaly",
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", String(32)),
    Column("charge_id", BigInteger),
    Column("subscription_id", String(36)),
    Column("period", String(16)),
    Column("request_id", String(64)),
    Column("paid_request_id", String(64)),
    Column("event_id", String(128)),
    Column("detected_at", DateTime),
    Column("detected_by", String(128)),
    Column("details", Text),
    Column("resolved_at", DateTime),
    Column("resolution", Text),
)


# Cancellations the billing run's breaker held back until an operator releases them.
BillingHold = _Table(
    "billing_hold",
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("subscription_id", String(36)),
    Column("period", String(16)),
    Column("reason", Text),
    Column("held_at", DateTime),
    Column("released_at", DateTime),
    Column("released_by", String(128)),
)
