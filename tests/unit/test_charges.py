"""Charging rules of domain/charges.py on fakes: when to call out, and with which id."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import pytest

from domain import charges, errors
from domain.charges import ChargeState, ChargeTarget
from domain.ports import PlatformAnswer
from tests.fakes import FakeEcommerce, FakeUnitOfWork

NOW = datetime(2026, 11, 21, 12)
TIMEOUT = timedelta(seconds=60)
CREATED = PlatformAnswer(201, '{"order_id": "o1"}', {"order_id": "o1"}, True)


@pytest.fixture
def uow():
    uow = FakeUnitOfWork()
    uow.charges.targets["s1"] = ChargeTarget("s1", "cust-1", 77, 1, 1)
    return uow


def charge(uow, platform, request_id="r1", at=NOW):
    return charges.charge(uow, platform, "s1", request_id, lambda: at, TIMEOUT)


def test_without_a_schedule_the_billing_period_is_the_utc_calendar_month():
    target = ChargeTarget("s1", "c", 1, 1, 1)
    assert target.period(datetime(2026, 1, 31, 23, 59)).key == "2026-01"
    assert target.period(datetime(2026, 12, 1)).key == "2026-12"


def test_a_first_charge_commits_the_pending_row_before_calling_out(uow):
    # Given a platform that checks the ledger when called
    seen = []
    platform = FakeEcommerce()
    original = platform.place_order

    def spying(*args):
        seen.append((uow.commits, uow.charges.rows[("s1", "2026-11")].state))
        return original(*args)

    platform.place_order = spying
    # When charged
    result = charge(uow, platform)
    # Then the pending row was committed before the call, and settled after
    assert seen == [(1, ChargeState.PENDING)]
    assert result.charge.state == ChargeState.SUCCEEDED
    assert platform.calls == [("r1", "cust-1", 77)]


def test_a_succeeded_period_is_replayed_without_calling_out(uow):
    platform = FakeEcommerce(CREATED)
    charge(uow, platform)
    result = charge(uow, platform, "r2")
    assert result.replayed
    assert len(platform.calls) == 1


def test_a_fresh_pending_row_means_in_progress(uow):
    uow.charges.create_pending(uow.charges.targets["s1"], "2026-11", "r0", NOW)
    with pytest.raises(errors.ChargeInProgress):
        charge(uow, FakeEcommerce(), at=NOW + timedelta(seconds=59))


def test_a_stale_pending_row_is_retried_with_its_request_id(uow):
    uow.charges.create_pending(uow.charges.targets["s1"], "2026-11", "r0", NOW)
    platform = FakeEcommerce()
    charge(uow, platform, "r9", at=NOW + timedelta(seconds=60))
    assert platform.calls[0][0] == "r0"


@pytest.mark.parametrize(
    ("first", "expected_state", "retry_id"),
    [
        (errors.PlatformTimeout("slow"), ChargeState.UNKNOWN, "r1"),
        (errors.PlatformUnreachable("dropped"), ChargeState.UNKNOWN, "r1"),
        (errors.PlatformUnreachable("refused", sent=False), ChargeState.ERROR, "r1"),
        (PlatformAnswer(429, "slow down"), ChargeState.ERROR, "r1"),
        (PlatformAnswer(401, "bad key"), ChargeState.ERROR, "r1"),
        (PlatformAnswer(503, "down"), ChargeState.UNKNOWN, "r1"),
        (PlatformAnswer(402, '{"e": 1}', {"e": 1}, True), ChargeState.FAILED, "r2"),
    ],
)
def test_the_retry_gets_a_new_request_id_only_after_a_decline(uow, first, expected_state, retry_id):
    # Given a first attempt that ends this way
    platform = FakeEcommerce(first)
    with contextlib.suppress(errors.PlatformError):
        charge(uow, platform, "r1")
    assert uow.charges.rows[("s1", "2026-11")].state == expected_state
    # When retried with a new id
    charge(uow, platform, "r2")
    # Then the id sent is the first one when the platform may have seen it
    assert [c[0] for c in platform.calls] == ["r1", retry_id]


def test_a_5xx_raises_platform_failed(uow):
    with pytest.raises(errors.PlatformFailed):
        charge(uow, FakeEcommerce(PlatformAnswer(500, "boom")))


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (ChargeTarget("s1", "c", 1, 2, 1), "CANCELLED"),
        (ChargeTarget("s1", "c", 1, 1, 3), "INACTIVE"),
        (ChargeTarget("s1", None, 1, 1, 1), "customer"),
        (ChargeTarget("s1", "c", None, 1, 2), "SKU"),
    ],
)
def test_ineligible_subscriptions_are_refused_before_any_write(uow, target, reason):
    uow.charges.targets["s1"] = target
    platform = FakeEcommerce()
    with pytest.raises(errors.SubscriptionNotEligible, match=reason):
        charge(uow, platform)
    assert platform.calls == []
    assert uow.charges.rows == {}


def test_a_replay_is_served_even_after_the_subscription_stopped_being_eligible(uow):
    platform = FakeEcommerce()
    charge(uow, platform)
    uow.charges.targets["s1"] = ChargeTarget("s1", "c", 1, 2, 1)
    assert charge(uow, platform).replayed
