"""Domain rules of domain/subscriptions.py on fakes: no database, no HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain import errors, subscriptions
from domain.model import ClubStatus, SubscriptionStatus
from tests.fakes import FakeUnitOfWork

NOW = datetime(2026, 11, 21, 12)


@pytest.fixture
def uow():
    return FakeUnitOfWork()


def test_subscribing_to_an_active_club_commits_a_subscription_and_an_active_row(uow):
    # Given an active club
    uow.clubs.open(1, ClubStatus.ACTIVE, NOW - timedelta(days=30))
    # When a customer subscribes
    sub = subscriptions.subscribe(uow, 1, "cust", NOW)
    # Then the subscription and its ACTIVE row effective now are committed
    assert uow.commits == 1
    assert sub.status_id == SubscriptionStatus.ACTIVE
    assert [(r.status_id, r.effect_date) for r in uow.history.rows] == [(1, NOW)]


@pytest.mark.parametrize("status", [ClubStatus.CLOSED, ClubStatus.INACTIVE, 99])
def test_only_active_clubs_accept_subscriptions(uow, status):
    # Given a club that is closed, inactive, or in a status operators invented
    uow.clubs.open(1, status, NOW - timedelta(days=1))
    # When a customer subscribes
    # Then ClubNotOpen, nothing committed
    with pytest.raises(errors.ClubNotOpen):
        subscriptions.subscribe(uow, 1, "cust", NOW)
    assert uow.commits == 0


def test_a_club_that_opens_in_the_future_is_not_open_now(uow):
    # Given a club opening tomorrow
    uow.clubs.open(1, ClubStatus.ACTIVE, NOW + timedelta(days=1))
    # When a customer subscribes today
    # Then ClubNotOpen, saying it has no status
    with pytest.raises(errors.ClubNotOpen, match="no current status"):
        subscriptions.subscribe(uow, 1, "cust", NOW)


def test_an_unknown_club_is_not_found(uow):
    with pytest.raises(errors.ClubNotFound):
        subscriptions.subscribe(uow, 7, "cust", NOW)


def test_a_second_subscription_names_the_first(uow):
    # Given a customer already subscribed
    uow.clubs.open(1, ClubStatus.ACTIVE, NOW - timedelta(days=30))
    first = subscriptions.subscribe(uow, 1, "cust", NOW)
    # When they subscribe again
    # Then AlreadySubscribed carries the first id
    with pytest.raises(errors.AlreadySubscribed) as caught:
        subscriptions.subscribe(uow, 1, "cust", NOW)
    assert caught.value.data["subscription_id"] == first.id


def test_a_pause_with_interval_writes_the_pause_and_the_return(uow):
    # Given an active subscription
    uow.clubs.open(1, ClubStatus.ACTIVE, NOW - timedelta(days=30))
    sub = subscriptions.subscribe(uow, 1, "cust", NOW - timedelta(days=5))
    # When paused for 10 days from a given date
    start = NOW + timedelta(hours=1)
    rows = subscriptions.change_status(
        uow, sub.id, SubscriptionStatus.PAUSED, NOW, effect_date=start, interval_days=10
    )
    # Then PAUSED at that date and ACTIVE ten days later, marked automatic
    assert [(r.status_id, r.effect_date, r.details) for r in rows] == [
        (SubscriptionStatus.PAUSED, start, None),
        (SubscriptionStatus.ACTIVE, start + timedelta(days=10), "Automatic return schedule"),
    ]


def test_an_interval_is_ignored_for_statuses_other_than_pause(uow):
    uow.clubs.open(1, ClubStatus.ACTIVE, NOW - timedelta(days=30))
    sub = subscriptions.subscribe(uow, 1, "cust", NOW)
    rows = subscriptions.change_status(
        uow, sub.id, SubscriptionStatus.CANCELLED, NOW, interval_days=10
    )
    assert len(rows) == 1


def test_a_change_supersedes_pending_scheduled_changes_only(uow):
    # Given a pause with a scheduled return
    uow.clubs.open(1, ClubStatus.ACTIVE, NOW - timedelta(days=30))
    sub = subscriptions.subscribe(uow, 1, "cust", NOW - timedelta(days=5))
    pause = subscriptions.change_status(
        uow, sub.id, SubscriptionStatus.PAUSED, NOW, interval_days=30
    )
    # When it is cancelled a day later
    later = NOW + timedelta(days=1)
    cancel = subscriptions.change_status(uow, sub.id, SubscriptionStatus.CANCELLED, later)
    # Then only the scheduled return was superseded, by the cancellation
    assert [(row.id, by) for row, by, _ in uow.history.superseded] == [(pause[1].id, cancel[0].id)]
    assert uow.subscriptions.get(sub.id, later + timedelta(days=90)).status_id == 2


def test_changing_an_unknown_subscription_is_not_found(uow):
    with pytest.raises(errors.SubscriptionNotFound):
        subscriptions.change_status(uow, "nope", SubscriptionStatus.ACTIVE, NOW)


def test_eligible_asks_for_members_of_active_and_closed_clubs(uow):
    # Given members of an active, a closed and an inactive club
    for club in (1, 2, 3):
        uow.clubs.open(club, ClubStatus.ACTIVE, NOW - timedelta(days=10))
    ids = [subscriptions.subscribe(uow, c, "cust", NOW - timedelta(days=5)).id for c in (1, 2, 3)]
    uow.clubs.open(2, ClubStatus.CLOSED, NOW - timedelta(days=1))
    uow.clubs.open(3, ClubStatus.INACTIVE, NOW - timedelta(days=1))
    # When eligible is asked
    # Then members of the active and closed club are eligible
    assert subscriptions.eligible_ids(uow, NOW) == sorted(ids[:2])
