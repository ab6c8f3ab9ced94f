"""The JSON shapes of the read endpoints (not a handler: GET /clubs, /club/{id} and
/subscription/{id} share them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.catalog import ClubDetail
from domain.charges import Charge
from domain.model import ClubStatus, SubscriptionStatus, status_name
from domain.read_model import ClubListRow, HistoryRow, opens_when
from domain.subscription_view import SubscriptionView


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _change(enum, row: HistoryRow, details: bool) -> dict[str, Any]:
    shaped = {
        "status": status_name(enum, row.status_id),
        "status_id": row.status_id,
        "effect_date": row.effect_date.isoformat(),
    }
    if details:
        shaped["details"] = row.details
    return shaped


# Status names by id, looked up once: GET /clubs names a thousand.
_CLUB_STATUS_NAMES = {int(s): s.name for s in ClubStatus}


def club_list(rows: list[ClubListRow]) -> list[dict[str, Any]]:
    """GET /clubs: each club as `club` below shapes it, without `scheduled_changes`
    (tests/integration/test_read_api.py compares them), from plain rows."""
    names = _CLUB_STATUS_NAMES
    active = int(ClubStatus.ACTIVE)
    return [
        {
            "id": club_id,
            "name": name,
            "sku": sku,
            "status": names.get(status_id),
            "status_id": status_id,
            "since": since,
            "accepts_subscriptions": status_id == active,
            "opens_at": opens_when(status_id, next_status_id, next_at),
            "next_change": (
                None
                if next_at is None
                else {
                    "status": names.get(next_status_id),
                    "status_id": next_status_id,
                    "effect_date": next_at,
                }
            ),
        }
        for club_id, name, sku, status_id, since, next_status_id, next_at in rows
    ]


def club(summary: ClubDetail) -> dict[str, Any]:
    """GET /club/{id}."""
    shaped = {
        "id": summary.club.id,
        "name": summary.club.name,
        "sku": summary.club.sku,
        "status": status_name(ClubStatus, summary.status_id),
        "status_id": summary.status_id,
        "since": _when(summary.since),
        "accepts_subscriptions": summary.status_id == ClubStatus.ACTIVE,
        "opens_at": _when(summary.opens_at),
        "next_change": (
            _change(ClubStatus, summary.next_change, details=False)
            if summary.next_change is not None
            else None
        ),
    }
    shaped["scheduled_changes"] = [
        _change(ClubStatus, row, details=False) for row in summary.scheduled
    ]
    return shaped


def _charge(charge: Charge) -> dict[str, Any]:
    return {
        "state": charge.state.value,
        "attempts": charge.attempts,
        "request_id": charge.request_id,
        "last_attempt_at": _when(charge.last_attempt_at),
        "failure_reason": charge.failure_reason,
    }


def subscription(view: SubscriptionView) -> dict[str, Any]:
    record = view.record
    return {
        "id": record.id,
        "customer_id": record.customer_id,
        "create_date": _when(record.create_date),
        "club": (
            {
                "id": record.club.id,
                "name": record.club.name,
                "sku": record.club.sku,
                "status": status_name(ClubStatus, record.club_status_id),
                "status_id": record.club_status_id,
            }
            if record.club is not None
            else None
        ),
        "status": status_name(SubscriptionStatus, view.status_id),
        "status_id": view.status_id,
        "since": _when(view.since),
        "scheduled_changes": [
            _change(SubscriptionStatus, row, details=True) for row in view.scheduled
        ],
        "billing": {
            "schedule": {
                "interval": record.schedule.interval.value,
                "anniversary": record.schedule.anniversary,
            },
            "current_period": (
                {
                    "period": view.period.key,
                    "billing_date": view.period.billing_date.isoformat(),
                    "charge": _charge(view.period_charge) if view.period_charge else None,
                }
                if view.period is not None
                else None
            ),
            "unpaid_periods": [
                {
                    "period": unpaid.charge.period,
                    "billing_date": _when(unpaid.charge.billing_date),
                    **_charge(unpaid.charge),
                    "retry_until": unpaid.retry_until.isoformat(),
                }
                for unpaid in view.unpaid
            ],
        },
    }
