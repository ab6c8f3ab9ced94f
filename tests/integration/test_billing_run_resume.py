"""The daily run at scale: cut off halfway it resumes from its checkpoint, one invocation
at a time, and a retry never queues a subscription twice. Real PostgreSQL; the queue is
an in-memory fake with SQS's batch interface (tests/integration/test_billing_run.py runs
the same code against moto's SQS)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from adapters.billing_queue import QueueSendFailed
from handlers import billing_run
from tests import builders

NOW = datetime(2026, 11, 1, 6)


class FakeQueue:
    """Records every message it acknowledges; can fail one batch, can be slow."""

    def __init__(self, delay: float = 0.0, fail_batch: int | None = None) -> None:
        self.sent: list[str] = []
        self.delay = delay
        self.fail_batch = fail_batch
        self.calls = 0
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def send(self, messages) -> None:
        with self.lock:
            self.calls += 1
            call = self.calls
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if call == self.fail_batch:
                raise QueueSendFailed("10 billing message(s) could not be queued")
            with self.lock:
                self.sent.extend(m.subscription_id for m in messages)
        finally:
            with self.lock:
                self.active -= 1


class Deadline:
    """The Lambda context's time left: plenty for `checks` looks, then a few seconds."""

    def __init__(self, checks: int) -> None:
        self.checks = checks

    def __call__(self) -> float:
        self.checks -= 1
        return 600_000 if self.checks >= 0 else 5_000


def members(db, count: int) -> list[str]:
    club = builders.club(db, sku=555)
    return [builders.subscription(db, club, sub_id=f"sub-{n:04d}") for n in range(count)]


def checkpoint(db) -> dict:
    with db.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM billing_run")).mappings().one())


def test_a_run_cut_off_by_its_deadline_resumes_after_its_checkpoint_without_duplicates(db, now):
    # Given 95 due members
    now(NOW)
    subs = members(db, 95)
    queue = FakeQueue()
    # When the first invocation runs out of time after 30 subscriptions (a checkpoint every 20)
    first = billing_run.run(queue, NOW, Deadline(30), checkpoint_every=20, check_every=1)
    # Then it stopped, with everything up to its checkpoint queued and nothing after it
    assert first.status == "paused"
    state = checkpoint(db)
    assert state["last_queued_id"] == subs[30] == first.last_queued_id
    assert sorted(queue.sent) == subs[:31]
    assert state["lease_until"] is None
    assert state["finished_at"] is None
    # When the next schedule tick, 15 minutes later, invokes the run again
    later = now(NOW + timedelta(minutes=15))
    second = billing_run.run(queue, later, checkpoint_every=20, check_every=1)
    # Then it resumed after the checkpoint, planned with the first invocation's instant,
    # and every due member was queued exactly once
    assert second.status == "finished"
    assert Counter(queue.sent) == Counter(subs)
    state = checkpoint(db)
    assert state["planned_at"] == NOW
    assert (state["queued"], state["invocations"]) == (95, 2)
    assert state["finished_at"] == later
    # And a third tick the same day queues nothing
    assert billing_run.run(queue, later + timedelta(minutes=15)).status == "already finished"
    assert len(queue.sent) == 95


def test_only_one_invocation_holds_the_run_until_its_lease_ends(db, now):
    # Given 12 due members and an invocation that died holding the run (no release)
    now(NOW)
    subs = members(db, 12)
    queue = FakeQueue()
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO billing_run (run_date, planned_at, last_queued_id, queued, settled,"
                " invocations, lease_until, started_at, updated_at)"
                " VALUES (:d, :n, :last, 5, 0, 1, :lease, :n, :n)"
            ),
            {"d": NOW.date(), "n": NOW, "last": subs[4], "lease": NOW + billing_run.LEASE},
        )
    # When another invocation comes while the lease holds
    busy = billing_run.run(queue, NOW + timedelta(minutes=15))
    # Then it queues nothing
    assert busy.status == "busy"
    assert queue.sent == []
    # When one comes after the lease ran out
    resumed = billing_run.run(queue, NOW + billing_run.LEASE + timedelta(seconds=1))
    # Then it resumes after the dead invocation's checkpoint
    assert resumed.status == "finished"
    assert sorted(queue.sent) == subs[5:]


def test_a_batch_sqs_refused_keeps_the_checkpoint_before_it_and_the_retry_sends_the_rest(db, now):
    # Given 60 due members and a queue that refuses its fourth batch
    now(NOW)
    subs = members(db, 60)
    queue = FakeQueue(fail_batch=4)
    # When the run checkpoints every 20 (two batches)
    with pytest.raises(QueueSendFailed):
        billing_run.run(queue, NOW, checkpoint_every=20, senders=1)
    # Then the checkpoint stayed at the last point SQS had acknowledged everything before,
    # and the run was released for the next tick
    state = checkpoint(db)
    assert state["last_queued_id"] == subs[19]
    assert state["lease_until"] is None
    assert state["finished_at"] is None
    # When the next tick resumes
    queue.fail_batch = None
    resumed = billing_run.run(queue, NOW + timedelta(minutes=15), checkpoint_every=20)
    assert resumed.status == "finished"
    # Then every member was queued, and only members after that checkpoint more than once
    counts = Counter(queue.sent)
    assert set(counts) == set(subs)
    assert {s for s, n in counts.items() if n > 1} <= set(subs[20:40])


def test_batches_are_sent_concurrently_by_the_run_s_senders(db, now):
    # Given 200 due members and a queue taking 20 ms per SendMessageBatch
    now(NOW)
    members(db, 200)
    queue = FakeQueue(delay=0.02)
    # When the run queues them with four senders
    result = billing_run.run(queue, NOW, senders=4)
    # Then the twenty batches overlapped, four at a time
    assert result.counts["queued"] == 200
    assert queue.most_active == 4
