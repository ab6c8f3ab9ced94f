"""Billing run values: deterministic request ids and the queue message."""

from __future__ import annotations

import uuid

import pytest

from domain.billing import REQUEST_ID_NAMESPACE, BillingMessage, request_id_for


def test_the_request_id_is_uuid5_of_subscription_and_period():
    # Given a subscription and a period, When deriving its request id
    derived = request_id_for("sub-1", "2026-11")
    # Then it is the documented uuid5, 36 characters, the same every time
    assert derived == str(uuid.uuid5(REQUEST_ID_NAMESPACE, "sub-1:2026-11"))
    assert len(derived) == 36
    assert derived == request_id_for("sub-1", "2026-11")


def test_each_retry_after_a_refusal_gets_its_own_deterministic_id():
    # Given a period refused once and twice, When deriving the retries' ids
    ids = {request_id_for("sub-1", "2026-11", n) for n in range(3)}
    # Then all differ, and each is stable
    assert len(ids) == 3
    assert request_id_for("sub-1", "2026-11", 2) == request_id_for("sub-1", "2026-11", 2)


def test_a_billing_message_round_trips_through_json_shape():
    # Given a message, When turned into a dict and back, Then it is the same
    message = BillingMessage("sub-1", "2026-Q4", request_id_for("sub-1", "2026-Q4"))
    assert BillingMessage.from_dict(message.to_dict()) == message


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"subscription_id": "s", "period": "2026-11"},
        {"subscription_id": 1, "period": "2026-11", "request_id": "r"},
        {"subscription_id": "s" * 37, "period": "2026-11", "request_id": "r"},
    ],
)
def test_a_malformed_billing_message_is_refused(data):
    # Given a body that is not a billing message, When read, Then ValueError
    with pytest.raises(ValueError, match="billing message"):
        BillingMessage.from_dict(data)
