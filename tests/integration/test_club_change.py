"""Changing club: POST and DELETE /subscription/{id}/club-change/, the history rows they
schedule, and billing across the boundary (real PostgreSQL, injected clock, fake platform)."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from common import clock
from common.observability import logger
from domain import charges, club_changes, errors
from handlers import billing_run as billing_run_handler
from handlers import charge as charge_handler
from handlers import club_change, club_change_cancel
from handlers import eligible as eligible_handler
from handlers import status as status_handler
from repositories.charges import SqlAlchemyChargeRepository
from repositories.club_changes import SqlAlchemyClubChangeRepository
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from scripts import billing_run, demo_data
from tests import builders, platforms
from tests.events import api_event, invoke
from tests.integration.test_status import current_status

RESOURCE = "/subscription/{id}/club-change"
NOW = datetime(2026, 11, 21, 12)
DECEMBER = datetime(2026, 12, 1)


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def post(sub_id: str, body: dict):
    return invoke(
        club_change.lambda_handler, api_event("POST", RESOURCE, {"id": sub_id}, body=body)
    )


def delete(sub_id: str):
    return invoke(club_change_cancel.lambda_handler, api_event("DELETE", RESOURCE, {"id": sub_id}))


def set_status(sub_id: str, body: dict):
    event = api_event("POST", "/subscription/{id}/status", {"id": sub_id}, body=body)
    return invoke(status_handler.lambda_handler, event)


def eligible_ids() -> list[str]:
    return invoke(eligible_handler.lambda_handler, api_event("GET", "/subscription/eligible"))[1]


def run_on(now, day: datetime):
    now(day)
    return billing_run.run(io.StringIO())


def ledger(db, sub_id: str) -> list[tuple]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT period, state, store_sku FROM charge WHERE subscription_id = :s"
                    " ORDER BY created_at, id"
                ),
                {"s": sub_id},
            )
        )


def actions(db, sub_id: str) -> list[tuple[str, str]]:
    return [(a["action"], a["actor"]) for a in builders.audit(db, sub_id)]


def change_row(db, change_id: str) -> dict:
    with db.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM club_change WHERE id = :i"), {"i": change_id})
            .mappings()
            .one()
        )


@pytest.fixture
def clubs(db):
    """Club A (SKU 100) where the member is, club B (SKU 200) to move to."""
    return builders.club(db, sku=100), builders.club(db, sku=200)


@pytest.fixture
def member(db, clubs, now):
    now(NOW)
    return builders.subscription(db, clubs[0], customer=builders.unique_customer())


def customer_of(db, sub_id: str) -> str:
    with db.connect() as conn:
        return conn.scalar(
            text("SELECT customer_store_id FROM subscription WHERE id = :s"), {"s": sub_id}
        )


# --- the request -------------------------------------------------------------------------


def test_a_change_waits_for_the_next_period_and_the_history_rule_switches_at_the_instant(
    db, now, clubs, member
):
    # When the member asks to move to club B (the default: next period)
    status, body, _ = post(member, {"club_id": clubs[1]})
    # Then the change is scheduled for the first boundary, the 1st of December
    assert status == 201
    assert body["state"] == "scheduled"
    assert body["effective_at"] == "2026-12-01T00:00:00"
    assert (body["club_id"], body["target_club_id"]) == (clubs[0], clubs[1])
    assert body["first_charge"] == {
        "period": "2026-12",
        "billing_date": "2026-12-01T00:00:00",
        "store_sku": 200,
        "already_charged": False,
    }
    target = body["target_subscription_id"]
    # And two scheduled rows were written at the instant, nothing changes before it
    assert builders.history(db, member)[-1] == (2, DECEMBER, f"Club change to {clubs[1]}")
    assert builders.history(db, target) == [(1, DECEMBER, f"Club change from {clubs[0]}")]
    with db.connect() as conn:
        created = conn.scalar(
            text("SELECT create_date FROM subscription WHERE id = :s"), {"s": target}
        )
    assert created == DECEMBER
    assert current_status(db, member, NOW) == 1
    assert eligible_ids() == [member]
    assert actions(db, member) == [("club_change_scheduled", "club-change-endpoint")]
    # And at the instant the history rule switches clubs, with no job running
    now(DECEMBER)
    assert eligible_ids() == [target]
    assert (current_status(db, member, DECEMBER), current_status(db, target, DECEMBER)) == (2, 1)


def test_the_same_body_again_answers_the_change_and_a_different_one_is_refused(
    db, now, clubs, member
):
    # Given a pending change
    _, first, _ = post(member, {"club_id": clubs[1]})
    # When the same body comes again (a retry)
    status, again, _ = post(member, {"club_id": clubs[1], "when": "next_period"})
    # Then it answers 200 with the same change, and nothing more was written
    assert status == 200
    assert again["id"] == first["id"]
    assert builders.count(db, "club_change") == 1
    # And a different body is refused, naming the pending change
    other = builders.club(db, sku=300)
    status, refused, _ = post(member, {"club_id": other})
    assert status == 409
    assert refused["error"]["code"] == "club_change_pending"
    assert refused["error"]["club_change_id"] == first["id"]


def test_replace_cancels_the_pending_change_and_its_unstarted_subscription(db, now, clubs, member):
    # Given a pending change to club B
    _, first, _ = post(member, {"club_id": clubs[1]})
    other = builders.club(db, sku=300)
    # When the member replaces it with a change to club C
    now(NOW + timedelta(hours=1))
    status, second, _ = post(member, {"club_id": other, "replace": True})
    # Then the new change is scheduled and the old one cancelled, both rows superseded
    assert status == 201
    assert second["replaced"] == first["id"]
    old = change_row(db, first["id"])
    assert old["state"] == "cancelled"
    assert old["cancel_reason"] == f"replaced by club change {second['id']}"
    assert builders.count(db, "superseded_status_change", "superseded_by = :i", i=second["id"]) == 2
    # And the subscription made for the first change, never started, is gone with its claim
    assert builders.count(db, "subscription", "id = :s", s=first["target_subscription_id"]) == 0
    assert builders.count(db, "subscription_claim", "club_id = :c", c=clubs[1]) == 0
    assert builders.history(db, member)[-1] == (2, DECEMBER, f"Club change to {other}")
    assert [a for a, _ in actions(db, member)] == [
        "club_change_scheduled",
        "club_change_cancelled",
        "club_change_scheduled",
    ]


def test_a_preview_writes_nothing_and_agrees_with_the_change(db, now, clubs, member):
    builders.billing_schedule(db, clubs[1], "quarterly")
    # When the member previews a change
    tables = ("club_change", "subscription", "subscription_status_history", "billing_audit")
    before = [builders.count(db, t) for t in tables]
    status, preview, _ = post(member, {"club_id": clubs[1], "preview": True})
    # Then it answers what would happen and wrote nothing
    assert status == 200
    assert (preview["preview"], preview["state"], preview["id"]) == (True, "preview", None)
    assert [builders.count(db, t) for t in tables] == before
    # And the change itself says the same
    _, change, _ = post(member, {"club_id": clubs[1]})
    for key in ("effective_at", "first_charge", "target_schedule", "club_id", "when"):
        assert preview[key] == change[key]
    assert preview["target_schedule"] == {"interval": "quarterly", "anniversary": False}


def test_identical_concurrent_requests_create_one_change(db, now, clubs, member):
    # When eight identical requests arrive at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post(member, {"club_id": clubs[1]}), range(8)))
    # Then one created the change and the others answered it
    assert sorted(status for status, _, _ in answers) == [200] * 7 + [201]
    assert len({body["id"] for _, body, _ in answers}) == 1
    assert builders.count(db, "club_change") == 1
    assert builders.count(db, "subscription", "club_id = :c", c=clubs[1]) == 1
    assert builders.count(db, "subscription_status_history", "subscription_id = :s", s=member) == 2


def test_concurrent_changes_of_two_clubs_to_one_target_club_create_one_subscription(db, now):
    # Given a customer with subscriptions in clubs A and C, both moving to club B at once
    a, b, c = builders.club(db), builders.club(db), builders.club(db)
    customer = builders.unique_customer()
    first = builders.subscription(db, a, customer=customer)
    second = builders.subscription(db, c, customer=customer)
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda s: post(s, {"club_id": b}), [first, second]))
    # Then one change was made; the other is refused: one subscription per club and customer
    assert sorted(status for status, _, _ in answers) == [201, 409]
    assert builders.count(db, "subscription", "club_id = :c", c=b) == 1


# --- rules -------------------------------------------------------------------------------


def test_a_change_to_the_same_club_is_refused(db, now, clubs, member):
    status, body, _ = post(member, {"club_id": clubs[0]})
    assert (status, body["error"]["code"]) == (409, "same_club")
    assert builders.count(db, "club_change") == 0


@pytest.mark.parametrize("club_status", [2, 3], ids=["closed", "inactive"])
def test_a_club_that_takes_no_new_members_takes_no_change_either(db, now, member, club_status):
    target = builders.club(db, status_id=club_status)
    status, body, _ = post(member, {"club_id": target})
    assert (status, body["error"]["code"]) == (409, "club_not_open")
    assert builders.count(db, "subscription", "club_id = :c", c=target) == 0


def test_unknown_subscription_and_club_answer_404_and_bad_bodies_400(db, now, member):
    assert post("nope", {"club_id": 1})[1]["error"]["code"] == "subscription_not_found"
    assert post(member, {"club_id": 999999})[1]["error"]["code"] == "club_not_found"
    for body in ({}, {"club_id": "2"}, {"club_id": 2, "when": "later"}, {"club_id": 2**31}):
        status, answer, _ = post(member, body)
        assert (status, answer["error"]["code"]) == (400, "invalid_request")
    assert builders.count(db, "club_change") == 0


def test_a_paused_member_resumes_first(db, now, clubs, member):
    set_status(member, {"status_id": 3, "effect_date": "2026-11-20T00:00:00"})
    status, body, _ = post(member, {"club_id": clubs[1]})
    assert (status, body["error"]["code"]) == (409, "subscription_not_active")


def test_a_club_that_closes_before_the_instant_keeps_the_member(db, now, clubs, member, platform):
    # Given a change to club B, which closes the week after
    _, body, _ = post(member, {"club_id": clubs[1]})
    builders.club_status(db, clubs[1], 2, datetime(2026, 11, 28))
    # When the billing run comes on the 1st
    run_on(now, DECEMBER + timedelta(hours=6))
    # Then the member joined and was charged, as a closed club's members are
    assert ledger(db, body["target_subscription_id"]) == [("2026-12", "succeeded", 200)]


def test_a_club_where_the_customer_had_a_cancelled_subscription_reactivates_it(
    db, now, clubs, member, platform
):
    # Given the customer's subscription to club B, cancelled in the spring, started on the 15th
    earlier = builders.subscription(db, clubs[1], customer=customer_of(db, member))
    builders.subscription_started(db, earlier, datetime(2026, 1, 15, 9))
    builders.subscription_status(db, earlier, 2, datetime(2026, 4, 1), datetime(2026, 4, 1))
    builders.billing_schedule(db, clubs[1], "monthly", anniversary=True)
    # When the member moves to club B
    status, body, _ = post(member, {"club_id": clubs[1]})
    # Then that subscription is reactivated at the instant, keeping its anchor
    assert status == 201
    assert (body["target_subscription_id"], body["target_reactivated"]) == (earlier, True)
    assert builders.count(db, "subscription", "club_id = :c", c=clubs[1]) == 1
    assert builders.history(db, earlier)[-1] == (1, DECEMBER, f"Club change from {clubs[0]}")
    # First charge on the anniversary period in effect at the instant (Nov 15 - Dec 14)
    assert body["first_charge"]["period"] == "2026-11-15"
    run_on(now, DECEMBER + timedelta(hours=6))
    assert ledger(db, earlier) == [("2026-11-15", "succeeded", 200)]


def test_an_active_subscription_in_the_target_club_is_refused(db, now, clubs, member):
    builders.subscription(db, clubs[1], customer=customer_of(db, member))
    status, body, _ = post(member, {"club_id": clubs[1]})
    assert (status, body["error"]["code"]) == (409, "already_subscribed")


def test_delete_cancels_the_pending_change_and_keeps_its_rows_as_superseded(db, now, clubs, member):
    # Given a pending change
    _, body, _ = post(member, {"club_id": clubs[1]})
    # When it is cancelled
    status, cancelled, _ = delete(member)
    # Then both scheduled rows moved to the supersession table, and the member stays
    assert status == 200
    assert cancelled["state"] == "cancelled"
    assert cancelled["cancel_reason"] == "cancelled by request"
    assert builders.count(db, "superseded_status_change", "superseded_by = :i", i=body["id"]) == 2
    assert builders.history(db, member) == [(1, datetime(2020, 1, 1), None)]
    now(DECEMBER)
    assert eligible_ids() == [member]
    assert actions(db, member)[-1] == ("club_change_cancelled", "club-change-endpoint")
    # And there is nothing left to cancel
    status, again, _ = delete(member)
    assert (status, again["error"]["code"]) == (404, "club_change_not_found")


# --- "now" and the period already billed -------------------------------------------------


def test_now_moves_an_unbilled_period_to_the_new_club(db, now, clubs, member, platform):
    # When the member, not yet charged for November, changes now
    status, body, _ = post(member, {"club_id": clubs[1], "when": "now"})
    # Then the change has applied, and November moves to club B
    assert status == 201
    assert (body["state"], body["effective_at"], body["moved_period"]) == (
        "applied",
        NOW.isoformat(),
        "2026-11",
    )
    target = body["target_subscription_id"]
    counts = run_on(now, NOW + timedelta(hours=1))
    assert counts["charged"] == 1
    assert ledger(db, target) == [("2026-11", "succeeded", 200)]
    # And the old subscription's November is closed without a call: never charged there
    assert ledger(db, member) == [("2026-11", "abandoned", 100)]
    assert [o["sku_id"] for o in platform.orders] == [200]
    assert actions(db, member) == [
        ("club_change_scheduled", "club-change-endpoint"),
        ("club_change_applied", "club-change-endpoint"),
    ]
    # And the same request again answers the change it made
    status, again, _ = post(member, {"club_id": clubs[1], "when": "now"})
    assert (status, again["id"], again["moved_period"]) == (200, body["id"], "2026-11")


def test_now_is_refused_once_the_period_has_a_charge(db, now, clubs, member, platform):
    run_on(now, NOW)
    status, body, _ = post(member, {"club_id": clubs[1], "when": "now"})
    assert (status, body["error"]["code"], body["error"]["period"]) == (
        409,
        "period_already_billed",
        "2026-11",
    )
    assert builders.count(db, "club_change") == 0
    assert builders.count(db, "subscription", "club_id = :c", c=clubs[1]) == 0


def test_now_is_refused_while_a_charge_is_in_flight(db, now, clubs, member, platform):
    # Given a billing run whose call to the platform is still out
    platform.set_mode("slow", delay=0.6)
    runner = threading.Thread(target=run_on, args=(now, NOW))
    runner.start()
    deadline = time.monotonic() + 10
    while not ledger(db, member) and time.monotonic() < deadline:
        time.sleep(0.02)
    # When the member asks to change now
    status, body, _ = post(member, {"club_id": clubs[1], "when": "now"})
    runner.join()
    # Then it is refused: the period is in flight in the old club
    assert (status, body["error"]["code"]) == (409, "period_already_billed")
    assert ledger(db, member) == [("2026-11", "succeeded", 100)]


def test_a_change_racing_the_billing_run_never_charges_a_period_twice(db, now, clubs, platform):
    # Given members not yet charged for November, each changing now while the run charges
    customers = []
    for _ in range(4):
        sub = builders.subscription(db, clubs[0])
        barrier = threading.Barrier(2)

        def change(sub=sub, barrier=barrier):
            barrier.wait()
            return post(sub, {"club_id": clubs[1], "when": "now"})

        def run(barrier=barrier):
            barrier.wait()
            return run_on(now, NOW)

        with ThreadPoolExecutor(max_workers=2) as pool:
            changed, _ = pool.submit(change), pool.submit(run)
            status = changed.result()[0]
        customers.append((sub, status))
    run_on(now, NOW + timedelta(hours=1))
    # Then every customer was charged once for November, by exactly one club
    for sub, status in customers:
        customer = customer_of(db, sub)
        with db.connect() as conn:
            charged = conn.execute(
                text(
                    "SELECT c.store_sku FROM charge c JOIN subscription s"
                    " ON s.id = c.subscription_id WHERE s.customer_store_id = :c"
                    " AND c.period = '2026-11' AND c.state = 'succeeded'"
                ),
                {"c": customer},
            ).scalars()
            assert list(charged) == ([200] if status == 201 else [100])


def test_a_charge_that_read_the_member_before_a_change_now_cannot_bill_the_moved_period(
    db, now, clubs, member, platform, monkeypatch
):
    # Given a charge that has read the member as ACTIVE in club A and is about to write
    # its ledger row, held there until a change to B "now" has committed
    read, changed = threading.Event(), threading.Event()
    original = SqlAlchemyChargeRepository.target

    def held_target(self, subscription_id, at):
        found = original(self, subscription_id, at)
        if threading.current_thread() is not threading.main_thread():
            read.set()
            changed.wait(5)
        return found

    monkeypatch.setattr(SqlAlchemyChargeRepository, "target", held_target)

    def charge():
        try:
            charges.charge(
                SqlAlchemyUnitOfWork(),
                charge_handler.platform(),
                member,
                "req-race",
                clock.now,
                timedelta(seconds=30),
            )
        except errors.DomainError as exc:
            return exc.code
        return "charged"

    with ThreadPoolExecutor(max_workers=1) as pool:
        outcome = pool.submit(charge)
        assert read.wait(5)
        status, _, _ = post(member, {"club_id": clubs[1], "when": "now"})
        changed.set()
        # Then the change went through and the charge found the period closed
        assert status == 201
        assert outcome.result() == "charge_abandoned"
    assert platform.orders == []
    assert ledger(db, member) == [("2026-11", "abandoned", 100)]
    # And November is billed once, in club B
    run_on(now, NOW + timedelta(hours=1))
    assert [o["sku_id"] for o in platform.orders] == [200]


def test_a_sweep_that_read_a_change_before_another_recorded_it_records_nothing(
    db, now, clubs, member, platform, monkeypatch
):
    # Given an applied change, read as due by a sweep before another sweep recorded it
    post(member, {"club_id": clubs[1]})
    now(DECEMBER + timedelta(hours=6))
    uow = SqlAlchemyUnitOfWork()
    with uow:
        stale = uow.club_changes.due_unrecorded(clock.now())
    assert len(stale) == 1
    first = club_changes.sweep(SqlAlchemyUnitOfWork(), clock.now())
    # When the slower sweep goes on with what it read
    monkeypatch.setattr(SqlAlchemyClubChangeRepository, "due_unrecorded", lambda self, at: stale)
    second = club_changes.sweep(SqlAlchemyUnitOfWork(), clock.now())
    # Then the change was recorded applied exactly once
    assert (len(first.applied), len(second.applied)) == (1, 0)
    assert [a for a in actions(db, member) if a[0] == "club_change_applied"] == [
        ("club_change_applied", "billing-run")
    ]


# --- billing across the boundary ---------------------------------------------------------


def test_the_old_clubs_last_period_and_the_new_clubs_first_are_each_charged_once(
    db, now, clubs, member, platform
):
    # Given a member charged for November in club A, moving to quarterly club B
    builders.billing_schedule(db, clubs[1], "quarterly")
    run_on(now, datetime(2026, 11, 1, 6))
    now(NOW)
    _, body, _ = post(member, {"club_id": clubs[1]})
    target = body["target_subscription_id"]
    assert body["first_charge"]["period"] == "2026-Q4"
    # When the billing runs of December, January and February come (twice each)
    for day in (DECEMBER, datetime(2027, 1, 1), datetime(2027, 2, 1)):
        run_on(now, day + timedelta(hours=6))
        run_on(now, day + timedelta(hours=7))
    # Then November was billed in A, and B billed as a member who joined on December 1st
    assert ledger(db, member) == [("2026-11", "succeeded", 100)]
    assert ledger(db, target) == [("2026-Q4", "succeeded", 200), ("2027-Q1", "succeeded", 200)]
    assert [o["sku_id"] for o in platform.orders] == [100, 200, 200]
    # And the billing run recorded the change once, after the instant
    applied = [a for a in actions(db, member) if a[0] == "club_change_applied"]
    assert applied == [("club_change_applied", "billing-run")]


@pytest.mark.parametrize("day", [29, 30, 31])
def test_calendar_to_anniversary_on_the_last_days_of_the_month(db, now, clubs, platform, day):
    # Given an anniversary club B and a member of calendar club A, not yet charged in January
    builders.billing_schedule(db, clubs[1], "monthly", anniversary=True)
    sub = builders.subscription(db, clubs[0])
    joined = datetime(2027, 1, day, 12)
    # When the member changes now, on January 29th to 31st
    now(joined)
    status, body, _ = post(sub, {"club_id": clubs[1], "when": "now"})
    assert status == 201
    target = body["target_subscription_id"]
    # Then B bills on that day each month, on the last day of shorter months
    for billed in (joined, datetime(2027, 2, 28, 6), datetime(2027, 3, day, 6)):
        run_on(now, billed + timedelta(minutes=1))
    assert [row[0] for row in ledger(db, target)] == [
        f"2027-01-{day}",
        "2027-02-28",
        f"2027-03-{day}",
    ]
    assert ledger(db, sub) == [("2027-01", "abandoned", 100)]


def test_anniversary_to_calendar_waits_for_the_clamped_boundary(db, now, clubs, platform):
    # Given a member of anniversary club A who started on a 31st, moving to calendar club B
    builders.billing_schedule(db, clubs[0], "monthly", anniversary=True)
    sub = builders.subscription(db, clubs[0])
    builders.subscription_started(db, sub, datetime(2026, 1, 31, 10))
    run_on(now, datetime(2027, 1, 31, 6))
    now(datetime(2027, 2, 10))
    _, body, _ = post(sub, {"club_id": clubs[1]})
    # Then the change waits for February's billing day, the 28th
    assert body["effective_at"] == "2027-02-28T00:00:00"
    for day in (datetime(2027, 2, 28, 6), datetime(2027, 3, 1, 6)):
        run_on(now, day)
    assert ledger(db, sub) == [("2027-01-31", "succeeded", 100)]
    assert ledger(db, body["target_subscription_id"]) == [
        ("2027-02", "succeeded", 200),
        ("2027-03", "succeeded", 200),
    ]


def test_two_changes_in_one_period_never_bill_it_twice(db, now, clubs, member, platform):
    # Given a member who moved to B now and was charged there for November
    _, first, _ = post(member, {"club_id": clubs[1], "when": "now"})
    b = first["target_subscription_id"]
    run_on(now, NOW + timedelta(hours=1))
    c = builders.club(db, sku=300)
    # When the member asks to move on to C in the same period
    now(NOW + timedelta(hours=2))
    status, refused, _ = post(b, {"club_id": c, "when": "now"})
    status_next, second, _ = post(b, {"club_id": c})
    # Then "now" is refused (November was billed in B) and the next period is C's
    assert (status, refused["error"]["code"]) == (409, "period_already_billed")
    assert (status_next, second["effective_at"]) == (201, "2026-12-01T00:00:00")
    run_on(now, DECEMBER + timedelta(hours=6))
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT period, store_sku FROM charge c JOIN subscription s ON s.id ="
                " c.subscription_id WHERE s.customer_store_id = :c AND state = 'succeeded'"
                " ORDER BY period"
            ),
            {"c": customer_of(db, member)},
        ).all()
    assert [tuple(r) for r in rows] == [("2026-11", 200), ("2026-12", 300)]


def test_a_change_during_the_retry_window_abandons_the_unpaid_period_at_the_instant(
    db, now, clubs, member, platform, monkeypatch
):
    # Given a member declined for November on the 28th, inside a five-day window
    platform.set_mode("reject")
    run_on(now, datetime(2026, 11, 28, 6))
    # When the member changes club: not now (the period has a row), at the next period
    now(datetime(2026, 11, 28, 12))
    assert post(member, {"club_id": clubs[1], "when": "now"})[0] == 409
    status, body, _ = post(member, {"club_id": clubs[1]})
    assert status == 201
    run_on(now, datetime(2026, 11, 30, 6))  # still declined, still inside the window
    platform.set_mode("normal")
    run_on(now, DECEMBER + timedelta(hours=6))
    # Then November is abandoned without cancelling anything, and B is charged for December
    assert ledger(db, member) == [("2026-11", "abandoned", 100)]
    assert ledger(db, body["target_subscription_id"]) == [("2026-12", "succeeded", 200)]
    history = builders.history(db, member)
    assert [row[0] for row in history] == [1, 2]
    assert history[-1][2] == f"Club change to {clubs[1]}"
    assert ("abandoned", "billing-run") in actions(db, member)
    assert ("cancellation", "billing-run") not in actions(db, member)


# --- what cancels a pending change -------------------------------------------------------


def test_a_pause_with_automatic_return_cancels_the_pending_change(db, now, clubs, member, platform):
    # Given a pending change
    _, body, _ = post(member, {"club_id": clubs[1]})
    # When the member pauses for ten days
    now(NOW + timedelta(hours=1))
    status, _, _ = set_status(member, {"status_id": 3, "interval": 10})
    # Then the change is cancelled in the same transaction, with why, both rows kept
    assert status == 200
    row = change_row(db, body["id"])
    assert row["state"] == "cancelled"
    assert row["cancel_reason"].startswith("status change ")
    assert builders.count(db, "superseded_status_change", "details LIKE 'Club change%'") == 2
    assert ("club_change_cancelled", "status-change") in actions(db, member)
    assert builders.count(db, "subscription", "club_id = :c", c=clubs[1]) == 0
    # And the member returns to club A on December 1st at 13:00 and is billed there
    run_on(now, datetime(2026, 12, 2, 6))
    assert ledger(db, member) == [("2026-12", "succeeded", 100)]


def test_a_status_change_on_the_target_cancels_the_change_too(db, now, clubs, member):
    _, body, _ = post(member, {"club_id": clubs[1]})
    status, _, _ = set_status(body["target_subscription_id"], {"status_id": 2})
    assert status == 200
    assert change_row(db, body["id"])["state"] == "cancelled"
    assert builders.history(db, member) == [(1, datetime(2020, 1, 1), None)]


def test_a_cancellation_by_the_billing_run_cancels_the_pending_change(
    db, now, clubs, member, platform
):
    # Given a member declined on November 1st who then asked to change at the next period
    platform.set_mode("reject")
    run_on(now, datetime(2026, 11, 1, 6))
    now(datetime(2026, 11, 2))
    _, body, _ = post(member, {"club_id": clubs[1]})
    # When the retry window closes without success
    for day in range(2, 7):
        run_on(now, datetime(2026, 11, day, 6, 1))
    # Then the billing run cancelled the member and, with it, the pending change
    row = change_row(db, body["id"])
    assert row["state"] == "cancelled"
    assert "Cancelled by billing" in row["cancel_reason"]
    now(DECEMBER + timedelta(hours=6))
    assert eligible_ids() == []
    assert builders.count(db, "subscription", "club_id = :c", c=clubs[1]) == 0


@pytest.mark.parametrize("seen_by", ["billing run", "eligible absorber"])
def test_a_status_row_written_by_sql_cancels_the_change_when_next_seen(
    db, now, clubs, member, platform, seen_by
):
    # Given a pending change, and an operator's pause written with plain SQL
    _, body, _ = post(member, {"club_id": clubs[1]})
    builders.subscription_status(db, member, 3, datetime(2026, 11, 22), datetime(2026, 11, 22))
    assert change_row(db, body["id"])["state"] == "scheduled"
    # When the billing run, or the absorber of GET /subscription/eligible, next looks
    now(datetime(2026, 11, 23))
    if seen_by == "billing run":
        run_on(now, datetime(2026, 11, 23))
    else:
        eligible_ids()
    # Then the change is cancelled, saying why, and the operator's row stands
    row = change_row(db, body["id"])
    assert row["state"] == "cancelled"
    assert "outside the API" in row["cancel_reason"]
    assert builders.history(db, member)[-1][:2] == (3, datetime(2026, 11, 22))
    now(DECEMBER)
    assert eligible_ids() == []


def test_the_demo_data_holds_a_scheduled_change(db, now):
    # When `make run` loads its demo data
    with db.begin() as conn:
        assert demo_data.load(conn, NOW)
    demo_data.schedule_club_change(NOW)
    # Then demo-customer-2 is moving from club 1 to club 2 at the next period
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT subscription_id, club_id, target_club_id, effective_at FROM club_change")
        ).one()
    assert tuple(row) == ("demo-sub-active-2", 1, 2, DECEMBER)
    now(NOW)
    assert "demo-sub-active-2" in eligible_ids()


def test_deleting_the_subscriptions_of_a_change_is_never_blocked_and_the_run_copes(
    db, now, clubs, member, platform
):
    # Given a pending change, whose two subscriptions an operator deletes with SQL
    _, body, _ = post(member, {"club_id": clubs[1]})
    with db.begin() as conn:
        for sub in (member, body["target_subscription_id"]):
            conn.execute(
                text("DELETE FROM subscription_status_history WHERE subscription_id = :s"),
                {"s": sub},
            )
            conn.execute(text("DELETE FROM subscription WHERE id = :s"), {"s": sub})
    # When the billing run comes
    counts = run_on(now, NOW + timedelta(hours=1))
    # Then nothing blocked the deletes, and the run cancelled the orphaned change
    assert counts["charged"] == 0
    assert change_row(db, body["id"])["state"] == "cancelled"


def test_replacing_a_change_by_one_to_the_same_club_now_starts_a_fresh_subscription(
    db, now, clubs, member, platform
):
    # Given a pending change to B at the next period
    _, first, _ = post(member, {"club_id": clubs[1]})
    # When it is replaced by a change to B now
    now(NOW + timedelta(hours=1))
    status, second, _ = post(member, {"club_id": clubs[1], "when": "now", "replace": True})
    # Then B's subscription is a new one, started now, and charged for November
    assert status == 201
    assert second["target_subscription_id"] != first["target_subscription_id"]
    assert builders.count(db, "subscription", "club_id = :c", c=clubs[1]) == 1
    run_on(now, NOW + timedelta(hours=2))
    assert ledger(db, second["target_subscription_id"]) == [("2026-11", "succeeded", 200)]


def test_each_outcome_is_logged_with_both_subscriptions_and_counted(db, now, clubs, member, capsys):
    # Given the logger writing to a buffer and the EMF blobs printed to stdout
    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)
    capsys.readouterr()
    customer = customer_of(db, member)
    try:
        # When a change is previewed, made, replayed and cancelled
        post(member, {"club_id": clubs[1], "preview": True})
        _, body, _ = post(member, {"club_id": clubs[1]})
        post(member, {"club_id": clubs[1]})
        delete(member)
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    printed = capsys.readouterr().out.splitlines()
    blobs = [json.loads(line) for line in printed if line.startswith('{"_aws"')]
    # Then each outcome has its line, naming both subscriptions, and its metric
    events = {line["message"]: line for line in lines if line["message"].startswith("club change")}
    assert set(events) == {
        "club change previewed",
        "club change scheduled",
        "club change replayed",
        "club change cancelled",
    }
    for line in events.values():
        assert line["subscription_id"] == member
        assert line["target_subscription_id"]
    assert events["club change scheduled"]["club_change_id"] == body["id"]
    names = {m["Name"] for b in blobs for d in b["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {
        "ClubChangePreviewed",
        "ClubChangeScheduled",
        "ClubChangeReplayed",
        "ClubChangeCancelled",
    } <= names
    # And the customer's id is never logged
    assert customer not in stream.getvalue()


def test_the_scheduled_billing_run_records_applied_changes_before_queueing(db, now, clubs, member):
    # Given a change whose instant has passed
    _, body, _ = post(member, {"club_id": clubs[1]})
    now(DECEMBER + timedelta(hours=6))
    # When the scheduled run's producer sweeps the club changes (handlers/billing_run.py)
    report = billing_run_handler.sweep_club_changes(clock.now())
    again = billing_run_handler.sweep_club_changes(clock.now())
    # Then it recorded the change once, as the billing run
    assert [c.id for c in report.applied] == [body["id"]]
    assert again.applied == []
    assert change_row(db, body["id"])["applied_recorded_at"] == DECEMBER + timedelta(hours=6)
    assert actions(db, member)[-1] == ("club_change_applied", "billing-run")


def test_after_a_mid_period_schedule_change_the_club_change_follows_billings_periods(
    db, now, clubs, member, platform
):
    # Given club A made quarterly on 10 November: billing still bills November monthly
    builders.billing_schedule(db, clubs[0], "quarterly", changed_at=datetime(2026, 11, 10))
    # When the member changes now, Then the period moved is billing's November, not Q4
    status, body, _ = post(member, {"club_id": clubs[1], "when": "now", "preview": True})
    assert status == 200
    assert body["moved_period"] == "2026-11"
    # And a change at the next period waits for 1 December, billing's next boundary (not
    # the quarter's start, which is a month later)
    status, body, _ = post(member, {"club_id": clubs[1]})
    assert (status, body["effective_at"]) == (201, DECEMBER.isoformat())
