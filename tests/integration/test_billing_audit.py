"""The billing audit: append-only, with who or what caused each money-related change."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from common import settings
from handlers import webhooks as webhook_handler
from scripts import billing_run
from tests import builders, platforms
from tests.events import invoke
from tests.webhook_events import WEBHOOK_SECRET, new_event, signed_event

OPERATING = Path(__file__).resolve().parents[2] / "docs" / "operating.md"
FIRST_RUN = datetime(2026, 11, 1, 6)


def documented_history_query() -> str:
    """The billing-history query docs/operating.md shows, exactly as written there."""
    block = OPERATING.read_text().split("<!-- billing-history-query -->", 1)[1]
    return re.search(r"<<'SQL'\n(.*?)^SQL$", block, re.S | re.M).group(1)


@pytest.fixture
def member(db, now, monkeypatch):
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings.get.cache_clear()
    now(FIRST_RUN)
    customer = builders.unique_customer()
    return {
        "id": builders.subscription(db, builders.club(db), customer=customer),
        "customer": customer,
    }


def webhook(payload, at: datetime) -> int:
    return invoke(webhook_handler.lambda_handler, signed_event(payload, at))[0]


def test_the_documented_query_reconstructs_a_subscriptions_billing_history(
    db, now, member, monkeypatch
):
    with platforms.running(monkeypatch) as platform:
        # Given a November declined once, charged the next day, then partly refunded
        platform.set_mode("reject", times=1)
        billing_run.run(io.StringIO())
        now(FIRST_RUN + timedelta(days=1))
        billing_run.run(io.StringIO())
        paid = platform.orders[0]["request_id"]
        refund = new_event("refund", request_id=paid, reason="broken", amount=3)
        assert webhook(refund, now.value()) == 200
        # And a card reported expired, so December's billing cancels the subscription
        card = new_event("card-unavailable", customer_id=member["customer"], reason="expired")
        assert webhook(card, now.value()) == 200
        now(datetime(2026, 12, 1, 6))
        billing_run.run(io.StringIO())
    # When the documented query (docs/operating.md) runs for this subscription
    query = documented_history_query().replace("demo-sub-active-1", member["id"])
    with db.connect() as conn:
        history = [tuple(r) for r in conn.execute(text(query))]
    # Then it tells the whole story, in order, with who caused each step
    assert [(row[1], row[2], row[3]) for row in history] == [
        ("charge_attempt", "billing-run", "2026-11"),
        ("charge_outcome", "billing-run", "2026-11"),
        ("charge_attempt", "billing-run", "2026-11"),
        ("charge_outcome", "billing-run", "2026-11"),
        ("refund", f"webhook:{refund['event_id']}", "2026-11"),
        ("card_unavailable", f"webhook:{card['event_id']}", None),
        ("cancellation", "billing-run", "2026-12"),
    ]
    assert "failed (HTTP 422)" in history[1][5]
    assert "succeeded (HTTP 201)" in history[3][5]


def test_audit_rows_can_be_neither_changed_nor_deleted(db, now, member, monkeypatch):
    # Given an audited charge
    with platforms.running(monkeypatch):
        billing_run.run(io.StringIO())
    assert len(builders.audit(db, member["id"])) == 2
    # When someone tries to change or delete its rows, Then PostgreSQL refuses
    for statement in ("UPDATE billing_audit SET actor = 'me'", "DELETE FROM billing_audit"):
        with pytest.raises(DBAPIError, match="append-only"), db.begin() as conn:
            conn.execute(text(statement))
    assert len(builders.audit(db, member["id"])) == 2


def test_the_audit_never_blocks_deleting_a_subscription(db, now, member, monkeypatch):
    # Given an audited, charged subscription
    with platforms.running(monkeypatch):
        billing_run.run(io.StringIO())
    # When an operator deletes it with its history, Then nothing refuses, and the audit stays
    with db.begin() as conn:
        conn.execute(
            text("DELETE FROM subscription_status_history WHERE subscription_id = :s"),
            {"s": member["id"]},
        )
        conn.execute(text("DELETE FROM subscription WHERE id = :s"), {"s": member["id"]})
    assert len(builders.audit(db, member["id"])) == 2


def test_charges_through_the_endpoint_are_audited_as_the_endpoints(db, now, member, monkeypatch):
    # Given a member charged through the charge endpoint
    from tests.integration.test_billing_schedule import post

    with platforms.running(monkeypatch):
        assert post(member["id"], "by-hand")[0] == 201
    # When its audit is read, Then the attempt and its outcome name the endpoint
    assert [
        (a["action"], a["actor"], a["request_id"]) for a in builders.audit(db, member["id"])
    ] == [
        ("charge_attempt", "charge-endpoint", "by-hand"),
        ("charge_outcome", "charge-endpoint", "by-hand"),
    ]
