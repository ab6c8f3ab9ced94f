"""forecast.line_for: how a planned message of the run (billing.plan -> billing.decide)
is reported: which attempt, which window, why a cancellation (issues 12 and 16)."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain import billing, forecast, forecast_changes, schedules
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


def change(reactivated: bool = False, unrecorded: bool = True) -> forecast.ClubChangeTaking:
    return forecast.ClubChangeTaking(
        "chg-1", "sub-1", 7, 1001, schedules.DEFAULT, datetime(2026, 5, 3),
        "sub-2", 8, 2002, schedules.DEFAULT, datetime(2026, 4, 1),
        datetime(2026, 12, 1), reactivated, unrecorded, ("2026-11",),
    )  # fmt: skip


def test_a_club_change_labels_the_target_s_first_charge_and_reports_the_member_leaving():
    # Given the run's charge line of the target subscription's first period
    planned = forecast.Line("sub-2", 8, 2002, "2026-12", "charge", 1, 5)
    # When the forecast names what the plan does because of the change
    labelled = forecast_changes.label(planned, change())
    added = forecast_changes.lines([change()], {("sub-2", "2026-12")}, {})
    # Then the charge is the change's, and the member leaves club 7 unpaid November abandoned
    assert labelled.reason.startswith("club change from club 7 (new subscription")
    assert labelled.also_counted_as() == "club change: joins"
    (left,) = added
    assert (left.subscription_id, left.club_id, left.sku, left.period, left.action) == (
        "sub-1", 7, 1001, "2026-12", "club change: leaves",
    )  # fmt: skip
    assert "unpaid 2026-11 abandoned, nobody cancelled" in left.reason


def test_a_reactivated_member_whose_first_period_is_already_charged_joins_without_a_charge():
    # When the plan looked at the target subscription and found its period already paid
    added = forecast_changes.lines(
        [change(reactivated=True, unrecorded=False)], set(), {"sub-2": ChargeState.SUCCEEDED}
    )
    # Then the forecast says it joins, and why nothing is charged
    joins = next(line for line in added if line.subscription_id == "sub-2")
    assert (joins.action, joins.period) == ("club change: joins", "2026-12")
    assert joins.reason.endswith("its first period is already charged")
    leaves = next(line for line in added if line.subscription_id == "sub-1")
    assert "abandoned" not in leaves.reason  # a run already recorded the change
