"""settlement.settle and webhooks.receive on fakes whose unit of work rolls back what it did
not commit (issue 12, point 12)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain import billing, errors, settlement, webhooks
from domain.billing import CardReport, Outcome, Step
from domain.charges import ChargeState, ChargeTarget
from domain.model import Subscription
from domain.ports import PlatformAnswer
from domain.webhooks import EventType, PlatformEvent, Receipt
from tests.fakes import FakeEcommerce, FakeUnitOfWork

NOW = datetime(2026, 11, 10, 9)
TIMEOUT = timedelta(seconds=60)
WINDOW = timedelta(days=5)
CREATED = PlatformAnswer(201, '{"order_id": "o"}', {"order_id": "o"}, True)
DECLINED = PlatformAnswer(402, '{"error": "declined"}', {"error": "declined"}, True)


@pytest.fixture
def uow():
    uow = FakeUnitOfWork()
    uow.charges.targets["s1"] = ChargeTarget("s1", "cust-1", 77, 1, 1, started=datetime(2026, 1, 1))
    uow.subscriptions.rows["s1"] = Subscription("s1", 1, "cust-1", datetime(2026, 1, 1))
    return uow


def settle(uow, platform, at=NOW, **options):
    return settlement.settle(uow, platform, "s1", lambda: at, TIMEOUT, WINDOW, **options)


def row(uow, period="2026-11"):
    return uow.charges.rows[("s1", period)]


def outcome(request_id, result, at=None, event_id=None):
    return PlatformEvent(
        event_id or f"evt-{request_id}-{result}-{at}",
        EventType.PAYMENT_OUTCOME,
        request_id=request_id,
        outcome=result,
        reason=None if result == "success" else "declined",
        occurred_at=at,
    )


def test_the_fake_unit_of_work_rolls_back_what_was_not_committed(uow):
    # Given a write inside a transaction that is left without commit
    with uow:
        uow.requests.claim("r", "charge", "s1:2026-11", NOW)
    # Then it is gone, like a real rollback
    assert uow.requests.claims == {}
    assert uow.rollbacks == 1


def test_a_declined_period_is_retried_inside_its_window_with_a_new_request_id(uow):
    # Given a first charge declined
    assert settle(uow, FakeEcommerce(DECLINED)) == Outcome.FAILED
    first = row(uow).request_id
    assert (row(uow).state, row(uow).declined_at) == (ChargeState.FAILED, NOW)
    # When the next day's run settles it
    platform = FakeEcommerce(CREATED)
    assert settle(uow, platform, NOW + timedelta(days=1)) == Outcome.CHARGED
    # Then it was charged under a new, derived request id
    assert platform.calls[0][0] == billing.request_id_for("s1", "2026-11", 1) != first


def test_a_platform_refusal_is_raised_recorded_as_an_error_and_keeps_its_id(uow):
    # Given a platform refusing our credentials
    platform = FakeEcommerce(PlatformAnswer(401, "{}", {}, True), CREATED)
    with pytest.raises(errors.PlatformRefused):
        settle(uow, platform)
    # Then the row is an error (no decline, no window) and the retry reuses the id
    assert (row(uow).state, row(uow).declined_at) == (ChargeState.ERROR, None)
    assert settle(uow, platform, NOW + timedelta(hours=1)) == Outcome.CHARGED
    assert platform.calls[0][0] == platform.calls[1][0]


def test_a_cancellation_for_a_period_paid_meanwhile_is_voided_and_rolled_back(uow):
    # Given a declined period past its window, planned for cancellation
    settle(uow, FakeEcommerce(DECLINED))
    later = NOW + timedelta(days=6)
    # When its order is reported paid before the worker cancels
    with uow:
        webhooks.receive(uow, outcome(row(uow).request_id, "success"), later)
    outcome_ = settle(uow, FakeEcommerce(), later, step=Step.CANCEL)
    # Then nobody is cancelled and the history is untouched
    assert outcome_ == Outcome.ALREADY_CHARGED
    assert uow.history.rows == []


def test_a_cancellation_whose_ledger_moved_under_it_rolls_everything_back(uow, monkeypatch):
    # Given a declined period past its window
    settle(uow, FakeEcommerce(DECLINED))
    later = NOW + timedelta(days=6)
    # When the row is paid between the worker's read and its cancellation
    original = uow.charges.transition

    def paid_first(charge, state, now, **kw):
        if state == ChargeState.ABANDONED:
            original(charge, ChargeState.SUCCEEDED, now, paid_request_id=charge.request_id)
        return original(charge, state, now, **kw)

    monkeypatch.setattr(uow.charges, "transition", paid_first)
    assert settle(uow, FakeEcommerce(), later, step=Step.CANCEL) == Outcome.SKIPPED
    # Then the cancellation and its audit were rolled back: nobody is cancelled
    assert uow.history.rows == []
    assert not any(e.action == "cancellation" for e in uow.audit.entries)


def test_a_closed_window_is_abandoned_without_cancelling_when_a_later_period_was_paid(uow):
    # Given November declined, then December paid
    settle(uow, FakeEcommerce(DECLINED))
    row_nov = row(uow)
    uow.charges.rows[("s1", "2026-11")] = row_nov.__class__(
        **{**row_nov.__dict__, "billing_date": datetime(2026, 11, 1)}
    )
    december = datetime(2026, 12, 1, 6)
    assert settle(uow, FakeEcommerce(CREATED), december) == Outcome.CHARGED
    # When November's cancellation is settled after its window
    assert (
        settle(
            uow, FakeEcommerce(), december + timedelta(days=5), period="2026-11", step=Step.CANCEL
        )
        == Outcome.ABANDONED
    )
    # Then November is abandoned and nobody is cancelled
    assert row(uow).state == ChargeState.ABANDONED
    assert uow.history.rows == []


def test_a_card_report_applies_only_to_subscriptions_created_before_it(uow):
    # Given a card report from before the subscription started
    uow.billing.cards["cust-1"] = CardReport("cust-1", "expired", datetime(2025, 12, 1))
    # When the run settles it, Then it is charged, not cancelled
    assert settle(uow, FakeEcommerce(CREATED)) == Outcome.CHARGED
    # And the success clears the report
    assert uow.billing.cards == {}


def test_an_outcome_for_an_older_attempt_never_reopens_the_period(uow):
    # Given attempt "old" declined and attempt "new" in flight
    settle(uow, FakeEcommerce(DECLINED))
    old = row(uow).request_id
    with uow:
        begun = uow.charges.begin_attempt(row(uow), "new", uow.charges.targets["s1"], NOW)
        uow.commit()
    # When a late failure of "old" arrives
    with uow:
        assert webhooks.receive(uow, outcome(old, "failure"), NOW) == Receipt.APPLIED
    # Then the row is still the pending "new" attempt
    assert (row(uow).state, row(uow).request_id) == (ChargeState.PENDING, begun.request_id)


def test_a_paid_period_never_reopens_and_a_later_failure_is_a_reversal(uow):
    # Given a paid charge, its success dated 10:00
    settle(uow, FakeEcommerce(CREATED))
    paid = row(uow).request_id
    webhooks.receive(uow, outcome(paid, "success", NOW + timedelta(hours=1)), NOW)
    # When a stale failure (09:30) and then a later one (11:00) arrive
    webhooks.receive(uow, outcome(paid, "failure", NOW + timedelta(minutes=30)), NOW)
    assert uow.charges.__dict__.get("anomalies", []) == []
    webhooks.receive(uow, outcome(paid, "failure", NOW + timedelta(hours=2)), NOW)
    # Then the period stays paid, and only the later failure is a reversal
    assert row(uow).state == ChargeState.SUCCEEDED
    assert [a.kind for a in uow.charges.anomalies] == ["reversal"]


def test_between_failures_the_later_occurred_at_wins(uow):
    # Given an attempt whose outcome is unknown
    with pytest.raises(errors.PlatformTimeout):
        settle(uow, FakeEcommerce(errors.PlatformTimeout("slow")))
    rid = row(uow).request_id
    # When a failure dated 12:00 then one dated 11:00 arrive
    webhooks.receive(
        uow,
        PlatformEvent(
            "e1",
            EventType.PAYMENT_OUTCOME,
            rid,
            outcome="failure",
            reason="late",
            occurred_at=NOW + timedelta(hours=3),
        ),
        NOW,
    )
    webhooks.receive(
        uow,
        PlatformEvent(
            "e2",
            EventType.PAYMENT_OUTCOME,
            rid,
            outcome="failure",
            reason="early",
            occurred_at=NOW + timedelta(hours=2),
        ),
        NOW,
    )
    # Then the later-dated failure's reason stands
    assert row(uow).failure_reason == "payment failed: late"


def test_a_duplicate_event_changes_nothing(uow):
    settle(uow, FakeEcommerce(CREATED))
    event = outcome(row(uow).request_id, "success", event_id="same")
    assert webhooks.receive(uow, event, NOW) == Receipt.APPLIED
    entries = len(uow.audit.entries)
    assert webhooks.receive(uow, event, NOW) == Receipt.DUPLICATE
    assert len(uow.audit.entries) == entries


def test_an_unexpected_error_while_calling_out_leaves_the_row_unknown_not_pending(uow):
    # Given a platform adapter failing in an unexpected way
    with pytest.raises(RuntimeError):
        settle(uow, FakeEcommerce(RuntimeError("boom"), CREATED))
    # Then the attempt is unknown (it may have been sent), not stuck pending
    assert row(uow).state == ChargeState.UNKNOWN
    first = row(uow).request_id
    # And the retry reuses its request id
    platform = FakeEcommerce(CREATED)
    assert settle(uow, platform, NOW + timedelta(minutes=1)) == Outcome.CHARGED
    assert platform.calls[0][0] == first


def test_a_request_that_cannot_be_built_is_recorded_as_not_sent():
    # Given a platform URL requests refuses before opening a socket
    from adapters.ecommerce_client import HttpEcommerce

    client = HttpEcommerce("not a url", "key", lambda: "secret", 1)
    # When placing an order, Then it is unreachable and known not sent
    with pytest.raises(errors.PlatformUnreachable) as raised:
        client.place_order("r1", "c", 1)
    assert raised.value.sent is False


# --- settle carries a charge message out only if decide() still plans it (merge of 12/16) ---


def test_a_charge_message_whose_window_closed_meanwhile_is_skipped_without_a_call(uow):
    # Given November declined on the 10th
    assert settle(uow, FakeEcommerce(DECLINED)) == Outcome.FAILED
    # When a charge message for it is settled after its window closed
    platform = FakeEcommerce(CREATED)
    outcome_ = settle(uow, platform, NOW + WINDOW + timedelta(hours=1), period="2026-11")
    # Then nothing is called: the next run's plan ends it (behind the breaker)
    assert (outcome_, platform.calls) == (Outcome.SKIPPED, [])


def test_an_earlier_period_the_platform_failed_on_is_not_charged_by_a_message(uow):
    # Given October ended in state error (platform failures only)
    platform = FakeEcommerce(PlatformAnswer(401, "{}", {}, True))
    with pytest.raises(errors.PlatformRefused):
        settle(uow, platform, datetime(2026, 10, 20, 9))
    assert row(uow, "2026-10").state == ChargeState.ERROR
    # When a (stale) charge message for October is settled in November
    platform = FakeEcommerce(CREATED)
    # Then it is skipped: an earlier period is retried only after a decline
    assert settle(uow, platform, period="2026-10") == Outcome.SKIPPED
    assert platform.calls == []


def test_a_charge_message_is_skipped_once_a_card_report_stands(uow):
    # Given a card report made after the subscription was created
    uow.billing.cards["cust-1"] = CardReport("cust-1", "expired", NOW - timedelta(days=1))
    platform = FakeEcommerce(CREATED)
    # When the charge message is settled
    # Then nothing is called: the next run's plan cancels it (behind the breaker)
    assert settle(uow, platform) == Outcome.SKIPPED
    assert platform.calls == []
