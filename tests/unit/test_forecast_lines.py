"""forecast.line_for: how a planned message of the run (billing.plan -> billing.decide)
is reported: which attempt, which window, why a cancellation (issues 12 and 16)."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain import billing, forecast
from domain.billing import BillingMessage, Step
from domain.charges import Charge, ChargeState, ChargeTarget

RUN = datetime(2026, 12, 3, 6)
WINDOW = timedelta(days=5)
TARGET = ChargeTarget("sub-1", "cust-1", 1001, 1, 1)


def inputs(*rows: Charge) -> forecast.Inputs:
    return forecast.Inputs(TARGET, {row.period: row for row in rows}, None, club_id=7)


def row(state: ChargeState, attempts: int, declined_at=None, reason=None) -> Charge:
    at = datetime(2026, 12, 1, 6)
    return Charge(
        1, "sub-1", "2026-12", "rq", state, attempts, None, None, at, at, at,
        datetime(2026, 12, 1), reason, declined_at,
    )  # fmt: skip


def charge(period: str = "2026-12") -> BillingMessage:
    return BillingMessage("sub-1", period, billing.request_id_for("sub-1", period))


def test_a_first_attempt_is_a_charge_whose_window_would_open_today():
    line = forecast.line_for(charge(), inputs(), RUN, WINDOW)
    assert (line.action, line.attempt, line.max_attempts, line.club_id) == ("charge", 1, 5, 7)


def test_a_declined_period_is_a_retry_inside_the_window_of_its_first_decline():
    declined = row(ChargeState.FAILED, 2, datetime(2026, 12, 2, 6), "declined")
    line = forecast.line_for(charge(), inputs(declined), RUN, WINDOW)
    # Declined on the 2nd: runs on the 3rd, 4th, 5th and 6th are left (window to the 7th)
    assert (line.action, line.attempt, line.max_attempts, line.reason) == (
        "retry",
        3,
        6,
        "declined",
    )


def test_a_period_the_platform_failed_on_is_retried_without_a_window():
    failed = row(ChargeState.ERROR, 1, None, "HTTP 401")
    line = forecast.line_for(charge(), inputs(failed), RUN, WINDOW)
    assert (line.action, line.attempt, line.max_attempts) == ("retry", 2, None)


def test_cancellations_say_why_and_abandons_cancel_nobody():
    card = BillingMessage("sub-1", "2026-12", "-", Step.CANCEL, "card expired (reported ...)")
    window = BillingMessage("sub-1", "2026-11", "-", Step.CANCEL, "no successful charge ...")
    abandon = BillingMessage("sub-1", "2026-10", "-", Step.ABANDON)
    assert forecast.line_for(card, inputs(), RUN, WINDOW).action == "cancel: card unavailable"
    assert forecast.line_for(window, inputs(), RUN, WINDOW).action == "cancel: window closing"
    assert forecast.line_for(abandon, inputs(), RUN, WINDOW).action == "abandon"
