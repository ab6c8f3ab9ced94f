"""POST /subscription/{id}/status/ against the migrated database."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text

from handlers import status as status_handler
from tests import builders
from tests.events import api_event, invoke

RESOURCE = "/subscription/{id}/status"


def post(sub_id, body=None, **kwargs):
    event = api_event("POST", RESOURCE, {"id": sub_id}, body=body, **kwargs)
    return invoke(status_handler.lambda_handler, event)


def current_status(db, sub_id, at):
    from repositories.status_rule import current_subscription_status
    from repositories.tables import SubscriptionStatusHistory as H

    with db.connect() as conn:
        row = conn.execute(current_subscription_status(at, H.subscription_id == sub_id)).first()
    return row.status_id if row else None


def test_cancelling_appends_a_row_and_answers_with_it(db, now):
    # Given an active subscription
    sub = builders.subscription(db, builders.club(db))
    # When it is cancelled with the frontend's date format
    status, body, _ = post(
        sub,
        {"status_id": 2, "effect_date": "2026-11-21T12:25:56.563000", "details": "moving abroad"},
    )
    # Then the row written is returned and stored
    assert status == 200
    assert len(body) == 1
    assert body[0]["status_id"] == 2
    assert body[0]["status"] == "CANCELLED"
    assert body[0]["effect_date"] == "2026-11-21T12:25:56.563000"
    assert body[0]["details"] == "moving abroad"
    assert (2, datetime(2026, 11, 21, 12, 25, 56, 563000), "moving abroad") in builders.history(
        db, sub
    )


def test_effect_date_defaults_to_now_and_accepts_whole_seconds_and_offsets(db, now):
    # Given a subscription
    sub = builders.subscription(db, builders.club(db))
    # When statuses are posted without a date, with whole seconds, and with an offset
    assert post(sub, {"status_id": 3})[1][0]["effect_date"] == now.value().isoformat()
    assert (
        post(sub, {"status_id": 1, "effect_date": "2026-11-21T13:00:00"})[1][0]["effect_date"]
        == "2026-11-21T13:00:00"
    )
    assert (
        post(sub, {"status_id": 1, "effect_date": "2026-11-21T15:00:00+02:00"})[1][0]["effect_date"]
        == "2026-11-21T13:00:00"
    )


def test_a_pause_with_an_interval_schedules_the_automatic_return(db, now):
    # Given an active subscription
    sub = builders.subscription(db, builders.club(db))
    # When it is paused for 30 days from now
    status, body, _ = post(sub, {"status_id": 3, "interval": 30})
    # Then a PAUSED row now and an ACTIVE row in 30 days are written
    assert status == 200
    assert [(r["status_id"], r["effect_date"]) for r in body] == [
        (3, now.value().isoformat()),
        (1, (now.value() + timedelta(days=30)).isoformat()),
    ]
    assert body[1]["details"] == "Automatic return schedule"
    # And the subscription is paused until the 30th day, then active again
    assert current_status(db, sub, now.value() + timedelta(days=29)) == 3
    assert current_status(db, sub, now.value() + timedelta(days=30)) == 1


def test_a_pause_without_an_interval_pauses_until_changed(db, now):
    # Given an active subscription
    sub = builders.subscription(db, builders.club(db))
    # When paused without interval
    _, body, _ = post(sub, {"status_id": 3})
    # Then only the PAUSED row is written
    assert [r["status_id"] for r in body] == [3]
    assert current_status(db, sub, now.value() + timedelta(days=3650)) == 3


def test_a_cancel_during_a_pause_is_not_undone_by_the_automatic_return(db, now):
    # Given a subscription paused for 30 days
    sub = builders.subscription(db, builders.club(db))
    pause = post(sub, {"status_id": 3, "interval": 30})[1]
    scheduled_return = pause[1]["id"]
    # When, ten days later, it is cancelled
    now(now.value() + timedelta(days=10))
    status, body, _ = post(sub, {"status_id": 2, "details": "no longer wanted"})
    # Then the return row left the history for the audit table, with when and why
    assert status == 200
    assert current_status(db, sub, now.value() + timedelta(days=60)) == 2
    assert builders.count(db, "subscription_status_history", "id = :i", i=scheduled_return) == 0
    with db.connect() as conn:
        audit = conn.execute(
            text(
                "SELECT history_id, status_id, superseded_at, superseded_by, reason"
                " FROM superseded_status_change"
            )
        ).one()
    assert audit.history_id == scheduled_return
    assert audit.status_id == 1
    assert audit.superseded_at == now.value()
    assert audit.superseded_by == body[0]["id"]
    assert body[0]["id"] in audit.reason


def test_rows_already_in_effect_are_never_superseded(db, now):
    # Given a subscription with a past pause and a past return
    sub = builders.subscription(db, builders.club(db))
    builders.subscription_status(db, sub, 3, datetime(2025, 1, 1))
    builders.subscription_status(db, sub, 1, datetime(2025, 2, 1))
    # When it is cancelled now
    post(sub, {"status_id": 2})
    # Then all past rows stay, and nothing is audited
    assert len(builders.history(db, sub)) == 4
    assert builders.count(db, "superseded_status_change") == 0


def test_an_unknown_subscription_answers_404_and_writes_nothing(db, now):
    # Given no such subscription
    # When its status is changed
    status, body, _ = post("00000000-0000-000-00000-000000000000", {"status_id": 2})
    # Then 404
    assert status == 404
    assert body["error"]["code"] == "subscription_not_found"
    assert builders.count(db, "subscription_status_history") == 0


def test_ids_that_are_not_uuids_are_accepted(db, now):
    # Given a subscription whose id is not a well-formed UUID
    sub = builders.subscription(
        db, builders.club(db), sub_id="00000000-0000-000-00000-000000000000"
    )
    # When its status changes
    status, _, _ = post(sub, {"status_id": 3}, base64_body=True)
    # Then it works
    assert status == 200
