"""The webhook signature: HMAC-SHA256 over "<timestamp>.<raw body>", five minutes' grace."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from adapters.webhook_signature import SignatureError, signature, verify

SECRET = "whsec-test"
BODY = b'{"event_id": "evt-1", "type": "refund"}'
NOW = 1_795_996_800


def test_the_signature_is_hex_hmac_sha256_of_timestamp_dot_body():
    # Given the documented scheme, computed independently
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    # When signing, Then the header value is v1=<that hex>
    assert signature(SECRET, NOW, BODY) == f"v1={expected}"


def test_a_fresh_correctly_signed_webhook_is_accepted():
    # Given a webhook signed now, When verified, Then its timestamp comes back
    assert verify(SECRET, str(NOW), signature(SECRET, NOW, BODY), BODY, NOW + 299) == NOW


def test_one_matching_signature_among_several_is_enough():
    # Given the header carries the old and the new secret's signatures (a rotation)
    header = f"{signature('old-secret', NOW, BODY)}, {signature(SECRET, NOW, BODY)}"
    # When verified with the new secret, Then it is accepted
    assert verify(SECRET, str(NOW), header, BODY, NOW) == NOW


@pytest.mark.parametrize(
    ("timestamp", "header", "body"),
    [
        (None, signature(SECRET, NOW, BODY), BODY),
        (str(NOW), None, BODY),
        (str(NOW), signature("wrong-secret", NOW, BODY), BODY),
        (str(NOW), signature(SECRET, NOW, BODY), BODY + b" "),
        (str(NOW + 1), signature(SECRET, NOW, BODY), BODY),
        ("12.5", signature(SECRET, "12.5", BODY), BODY),
        (str(NOW), "v1=", BODY),
    ],
)
def test_a_missing_or_wrong_signature_is_401(timestamp, header, body):
    # Given a webhook not provably from the platform, When verified, Then 401
    with pytest.raises(SignatureError) as refused:
        verify(SECRET, timestamp, header, body, NOW)
    assert (refused.value.status, refused.value.code) == (401, "invalid_signature")


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_timestamp_more_than_five_minutes_away_is_400(age):
    # Given a correctly signed webhook sent `age` seconds before now
    sent = NOW - age
    # When verified, Then it is refused as stale
    with pytest.raises(SignatureError) as refused:
        verify(SECRET, str(sent), signature(SECRET, sent, BODY), BODY, NOW)
    assert (refused.value.status, refused.value.code) == (400, "stale_timestamp")
