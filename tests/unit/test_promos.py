"""The promo rules that need no database: states read from the clock, segments, running."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from domain import promos
from domain.promo_model import (
    Profile,
    Promo,
    Reservation,
    ReservationState,
    order_request_id,
)

T0 = datetime(2026, 12, 1, 12, 0, 0)
HELD = Reservation("r-1", 1, "c-1", 1, ReservationState.HELD, T0, T0 + timedelta(seconds=60), T0)
PROMO = Promo(
    1, 1, "s", 38.7, -9.1, 1001, None, 1, ("ipa",), 5.0, T0, T0 + timedelta(hours=1), None, None
)


@pytest.mark.parametrize(
    ("seconds", "owns", "state"),
    [
        (59, True, ReservationState.HELD),
        (60, True, ReservationState.EXPIRED),
        (61, True, ReservationState.EXPIRED),
        (61, False, ReservationState.RELEASED),
    ],
)
def test_a_hold_expires_by_the_clock_alone(seconds, owns, state):
    hold = replace(HELD, owns_unit=owns)
    assert hold.state(T0 + timedelta(seconds=seconds)) == state


@pytest.mark.parametrize("stored", [ReservationState.PURCHASING, ReservationState.SOLD])
def test_purchasing_and_sold_never_expire(stored):
    assert replace(HELD, stored_state=stored).state(T0 + timedelta(days=1)) == stored


def test_a_promo_without_segments_targets_everyone():
    nobody = Profile("c", 38.7, -9.1, ())
    assert promos.in_segments(replace(PROMO, segments=()), nobody)
    assert not promos.in_segments(PROMO, nobody)
    assert promos.in_segments(PROMO, Profile("c", 38.7, -9.1, ("wine", "ipa")))


def test_running_is_from_start_inclusive_to_end_exclusive_and_not_cancelled():
    assert promos.not_running_reason(PROMO, T0) is None
    assert "starts at" in promos.not_running_reason(PROMO, T0 - timedelta(seconds=1))
    assert "ended at" in promos.not_running_reason(PROMO, T0 + timedelta(hours=1))
    cancelled = replace(PROMO, cancelled_at=T0 + timedelta(minutes=5))
    assert promos.not_running_reason(cancelled, T0) == "it was cancelled"


def test_order_request_ids_are_derived_from_the_reservation_and_attempt():
    first = order_request_id("r-1", 1)
    assert first == order_request_id("r-1", 1)
    assert len({first, order_request_id("r-1", 2), order_request_id("r-2", 1)}) == 3
    assert uuid.UUID(first).version == 5
    assert len(first) == 36
