"""Tests that seeded faults showed missing (issue 12, point 13): each fails with its
one-line fault seeded (see docs/money-path.md, "Seeded faults")."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from adapters import webhook_signature
from handlers import charge as charge_handler
from handlers import status as status_handler
from tests import builders, platforms
from tests.events import api_event, invoke

NOW = datetime(2026, 11, 10, 9)


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


def post_charge(sub: str, request_id: str):
    event = api_event(
        "POST", "/subscription/{id}/charge/{request_id}", {"id": sub, "request_id": request_id}
    )
    return invoke(charge_handler.lambda_handler, event)


@pytest.mark.parametrize("state", ["failed", "unknown", "error"])
def test_twelve_parallel_retries_of_an_open_period_make_exactly_one_call(db, now, platform, state):
    # Given a period whose first attempt failed (or whose outcome is unknown)
    now(NOW)
    sub = builders.subscription(db, builders.club(db, sku=3))
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at, declined_at)"
                " VALUES (:s, '2026-11', 'first', :st, 1, :n, :n, :n, :d)"
            ),
            {"s": sub, "st": state, "n": NOW, "d": NOW if state == "failed" else None},
        )
        conn.execute(
            text("INSERT INTO platform_request VALUES ('first', 'charge', :subject, :n)"),
            {"subject": f"{sub}:2026-11", "n": NOW},
        )
    # And a slow platform
    platform.set_mode("slow", delay=0.5, times=1)
    # When 12 retries with different request ids arrive at once
    barrier = threading.Barrier(12)
    answers = []

    def retry(n: int) -> None:
        barrier.wait()
        answers.append(post_charge(sub, f"retry-{n}")[0])

    threads = [threading.Thread(target=retry, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one more call reached the platform; the others were told to wait
    assert platform.calls == 1
    assert sorted(answers).count(409) == 11
    assert len(platform.orders) == 1


def test_every_offered_webhook_signature_is_compared_in_constant_time(monkeypatch):
    # Given a header offering two signatures, the second one right
    body, now = b'{"event_id": "e"}', 1_795_996_800
    header = f"v1={'0' * 64}, {webhook_signature.signature('s', now, body)}"
    compared = []
    real = webhook_signature.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook_signature.hmac, "compare_digest", spy)
    # When verified
    assert webhook_signature.verify("s", str(now), header, body, now) == now
    # Then each offered signature went through the constant-time comparison
    assert len(compared) == 2


def test_a_cancellation_dated_ahead_supersedes_the_pause_return_dated_before_it(db, now):
    # Given a member paused today with a return in 10 days
    now(NOW)
    sub = builders.subscription(db, builders.club(db))
    body = {"status_id": 3, "interval": 10, "effect_date": NOW.isoformat()}
    event = api_event("POST", "/subscription/{id}/status", {"id": sub}, body=body)
    assert invoke(status_handler.lambda_handler, event)[0] == 200
    # When a cancellation dated 20 days ahead is recorded
    cancel = {"status_id": 2, "effect_date": (NOW + timedelta(days=20)).isoformat()}
    event = api_event("POST", "/subscription/{id}/status", {"id": sub}, body=cancel)
    assert invoke(status_handler.lambda_handler, event)[0] == 200
    # Then the automatic return (dated before the cancellation's effect) is superseded:
    # the member stays paused until the cancellation, never active again
    rows = builders.history(db, sub)
    assert [r[0] for r in rows] == [1, 3, 2]
    assert builders.count(db, "superseded_status_change", "subscription_id = :s", s=sub) == 1
