"""Edge shapes: what the frontend sends is accepted, what it should not send is not."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from handlers.schemas import StatusChangeBody, SubscribeBody, club_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2019-02-18T12:25:56.563000", datetime(2019, 2, 18, 12, 25, 56, 563000)),
        ("2019-02-18T12:25:56", datetime(2019, 2, 18, 12, 25, 56)),
        ("2019-02-18T12:25:56Z", datetime(2019, 2, 18, 12, 25, 56)),
        ("2019-02-18T14:25:56+02:00", datetime(2019, 2, 18, 12, 25, 56)),
        ("2019-02-18", datetime(2019, 2, 18)),
    ],
)
def test_effect_dates_are_iso_8601_in_utc(raw, expected):
    assert StatusChangeBody(status_id=1, effect_date=raw).effect_date == expected


def test_ids_are_opaque_strings_not_uuids():
    assert SubscribeBody(customer_id="00000000-0000-0000-000-0000000000000").customer_id


@pytest.mark.parametrize("raw", ["1", "-1", "2147483647", "-2147483648", "007"])
def test_club_ids_are_any_postgres_integer(raw):
    assert club_id(raw) == int(raw)


@pytest.mark.parametrize("raw", [None, "", "2147483648", "+1", "1_000", "\u0661"])
def test_club_ids_outside_postgres_integers_are_refused(raw):
    with pytest.raises(ValueError, match="club id"):
        club_id(raw)


def test_unknown_fields_are_ignored_for_the_legacy_frontend():
    assert StatusChangeBody.model_validate({"status_id": 2, "extra": 1}).status_id == 2


def test_a_status_outside_the_three_is_refused():
    with pytest.raises(ValidationError, match="status_id"):
        StatusChangeBody(status_id=4)
