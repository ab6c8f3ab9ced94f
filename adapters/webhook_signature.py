"""The e-commerce platform's webhook signature: HMAC-SHA256 over the timestamp and body.

    X-Ecomm-Timestamp: 1795996800                  (unix seconds, when it was sent)
    X-Ecomm-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

The raw body is the exact bytes received. Several `v1=` values separated by commas are
accepted (while a secret is rotated). The signature is checked before the timestamp, so
only a holder of the secret learns that a timestamp was refused as stale.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Ecomm-Timestamp"
SIGNATURE_HEADER = "X-Ecomm-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """A webhook we must refuse: 401 when it is not proven to come from the platform,
    400 when it is signed but too old (or too far in the future)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: str | None,
    signatures: str | None,
    body: bytes,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a webhook; returns its timestamp, or raises SignatureError."""
    if not timestamp or not signatures:
        raise SignatureError(
            401, "invalid_signature", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required"
        )
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError(401, "invalid_signature", f"{TIMESTAMP_HEADER} must be unix seconds")
    expected = signature(secret, timestamp, body).encode()
    offered = [part.strip().encode() for part in signatures.split(",")[:5]]
    # Every candidate is compared, in constant time, whatever the earlier ones gave.
    matched = False
    for candidate in offered:
        matched |= hmac.compare_digest(candidate, expected)
    if not matched:
        raise SignatureError(401, "invalid_signature", "the webhook signature does not match")
    sent = int(timestamp)
    if abs(now - sent) > tolerance_seconds:
        raise SignatureError(
            400,
            "stale_timestamp",
            f"the webhook timestamp is more than {tolerance_seconds} seconds from now",
        )
    return sent
