"""billing.decide: what settle does with a subscription, which the forecast reports."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain import billing
from domain.billing import CardReport, Step
from domain.charges import Charge, ChargeState, ChargeTarget

RUN = datetime(2026, 12, 1, 6)
TIMEOUT = timedelta(seconds=60)
TARGET = ChargeTarget("sub-1", "cust-1", 1001, 1, 1)


def ledger(state: ChargeState, attempts: int, last: datetime, created: datetime = RUN) -> Charge:
    return Charge(
        1, "sub-1", "2026-12", "req", state, attempts, 422, None, created, last, last,
        datetime(2026, 12, 1), "declined",
    )  # fmt: skip


def decide(current: Charge | None, at: datetime, card=None, earlier=None) -> billing.Decision:
    return billing.decide(TARGET, current, lambda: card, lambda: earlier, at, TIMEOUT)


def test_a_new_period_is_attempt_one_of_five_daily_runs():
    decision = decide(None, RUN)
    assert (decision.action, decision.period, decision.attempt, decision.max_attempts) == (
        Step.CHARGE,
        "2026-12",
        1,
        5,
    )


def test_a_refused_period_is_retried_with_the_attempts_the_window_leaves():
    decision = decide(
        ledger(ChargeState.FAILED, 2, RUN + timedelta(days=1)), RUN + timedelta(days=2)
    )
    assert (decision.action, decision.attempt, decision.max_attempts) == (Step.RETRY, 3, 5)
    assert decision.reason == "declined"


def test_an_attempt_in_flight_is_waited_for_and_a_dead_one_retried():
    fresh = ledger(ChargeState.PENDING, 1, RUN)
    assert decide(fresh, RUN + timedelta(seconds=10)).action == Step.IN_PROGRESS
    assert decide(fresh, RUN + timedelta(minutes=5)).action == Step.RETRY


def test_a_card_reported_unavailable_cancels_and_says_why():
    card = CardReport("cust-1", "expired", datetime(2026, 11, 20))
    decision = decide(None, RUN, card=card)
    assert decision.action == Step.CANCEL
    assert "card is expired" in decision.reason


def test_the_window_closing_cancels_the_period_it_names():
    opened = RUN - timedelta(days=5)
    earlier = Charge(
        2, "sub-1", "2026-11", "req", ChargeState.FAILED, 5, 422, None, opened, opened, opened,
        datetime(2026, 11, 1), "declined",
    )  # fmt: skip
    decision = decide(None, RUN, earlier=earlier)
    assert (decision.action, decision.period, decision.unpaid) == (Step.CANCEL, "2026-11", earlier)


def test_settled_and_ineligible_subscriptions_are_left_alone():
    assert decide(ledger(ChargeState.SUCCEEDED, 1, RUN), RUN).action == Step.ALREADY_CHARGED
    paused = billing.decide(
        ChargeTarget("sub-1", "cust-1", 1001, 3, 1), None, lambda: None, lambda: None, RUN, TIMEOUT
    )
    assert (paused.action, paused.reason) == (Step.SKIP, "its status is PAUSED")
