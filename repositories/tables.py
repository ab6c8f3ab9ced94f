"""SQLAlchemy mapping of the approved tables and of the tables this service adds.

The approved tables are fixed (spec/data-model.md): defaults here are client-side only,
and nothing here may add a constraint to them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _uuid() -> str:
    return str(uuid.uuid4())


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Club(Base):
    __tablename__ = "club"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(128))
    store_sku: Mapped[int | None] = mapped_column(Integer)


class ClubStatusLookup(Base):
    __tablename__ = "club_status"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(128))


class ClubStatusHistory(Base):
    __tablename__ = "club_status_history"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    club_id: Mapped[int | None] = mapped_column(ForeignKey("club.id", ondelete="RESTRICT"))
    club_status_id: Mapped[int | None] = mapped_column(
        ForeignKey("club_status.id", ondelete="RESTRICT")
    )
    effect_date: Mapped[datetime | None] = mapped_column(DateTime, default=_utcnow)
    create_date: Mapped[datetime | None] = mapped_column(DateTime, default=_utcnow)
    details: Mapped[str | None] = mapped_column(String(256))


class Subscription(Base):
    __tablename__ = "subscription"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    club_id: Mapped[int | None] = mapped_column(ForeignKey("club.id", ondelete="RESTRICT"))
    customer_store_id: Mapped[str | None] = mapped_column(String(36))
    create_date: Mapped[datetime | None] = mapped_column(DateTime, default=_utcnow)


class StatusLookup(Base):
    __tablename__ = "status"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(128))


class SubscriptionStatusHistory(Base):
    __tablename__ = "subscription_status_history"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    subscription_id: Mapped[str | None] = mapped_column(
        ForeignKey("subscription.id", ondelete="RESTRICT")
    )
    status_id: Mapped[int | None] = mapped_column(ForeignKey("status.id", ondelete="RESTRICT"))
    effect_date: Mapped[datetime | None] = mapped_column(DateTime, default=_utcnow)
    create_date: Mapped[datetime | None] = mapped_column(DateTime, default=_utcnow)
    details: Mapped[str | None] = mapped_column(String(256))


class SubscriptionClaim(Base):
    """One row per (club, customer) that subscribed through the API: the subscribe lock."""

    __tablename__ = "subscription_claim"
    club_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_store_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscription.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        index=True,
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


class SupersededStatusChange(Base):
    """Scheduled status rows that a later change superseded, moved out of the history."""

    __tablename__ = "superseded_status_change"
    audit_id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    history_id: Mapped[str] = mapped_column(String(36))
    subscription_id: Mapped[str | None] = mapped_column(String(36), index=True)
    status_id: Mapped[int | None] = mapped_column(Integer)
    effect_date: Mapped[datetime | None] = mapped_column(DateTime)
    create_date: Mapped[datetime | None] = mapped_column(DateTime)
    details: Mapped[str | None] = mapped_column(String(256))
    superseded_at: Mapped[datetime] = mapped_column(DateTime)
    superseded_by: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(Text)


class Charge(Base):
    """The ledger: one row per subscription and billing period, written before calling out."""

    __tablename__ = "charge"
    __table_args__ = (UniqueConstraint("subscription_id", "period"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36))
    period: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    customer_store_id: Mapped[str | None] = mapped_column(String(36))
    store_sku: Mapped[int | None] = mapped_column(Integer)
    platform_status: Mapped[int | None] = mapped_column(Integer)
    platform_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    last_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    billing_date: Mapped[datetime | None] = mapped_column(DateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)


class ChargeAttempt(Base):
    """Every call towards the platform and what came of it."""

    __tablename__ = "charge_attempt"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    charge_id: Mapped[int] = mapped_column(ForeignKey("charge.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    platform_status: Mapped[int | None] = mapped_column(Integer)
    platform_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class BillingSchedule(Base):
    """A club's billing schedule; a club without a row bills by calendar month."""

    __tablename__ = "billing_schedule"
    club_id: Mapped[int] = mapped_column(
        ForeignKey("club.id", ondelete="CASCADE"), primary_key=True
    )
    interval: Mapped[str] = mapped_column(String(16), default="monthly")
    anniversary: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


class ChargeRefund(Base):
    __tablename__ = "charge_refund"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    charge_id: Mapped[int] = mapped_column(ForeignKey("charge.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    request_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[float | None] = mapped_column(Numeric(12, 2))
    reason: Mapped[str | None] = mapped_column(Text)
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


class WebhookEvent(Base):
    """Every platform event received, by id; 'pending' ones wait for what they refer to."""

    __tablename__ = "webhook_event"
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    customer_store_id: Mapped[str | None] = mapped_column(String(36))
    payload: Mapped[dict] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(DateTime)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime)
    note: Mapped[str | None] = mapped_column(Text)


class CardUnavailable(Base):
    __tablename__ = "card_unavailable"
    customer_store_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    reported_at: Mapped[datetime] = mapped_column(DateTime)
    event_id: Mapped[str | None] = mapped_column(String(128))


class BillingAudit(Base):
    """Append-only: every money-related change and who or what caused it."""

    __tablename__ = "billing_audit"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    subscription_id: Mapped[str | None] = mapped_column(String(36))
    customer_store_id: Mapped[str | None] = mapped_column(String(36))
    period: Mapped[str | None] = mapped_column(String(16))
    charge_id: Mapped[int | None] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str | None] = mapped_column(Text)
