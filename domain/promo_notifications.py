"""Telling customers that a promo started: the announcer and the notification worker.

The announcer (every minute) finds the running promos not yet announced, whoever inserted
them and whenever they started, streams each one's audience and queues it; the promo is
marked announced in the same transaction that held its lock, after everything was queued
(a crash before that announces again, and the worker sends each customer once anyway).
The worker records one notification per (promo, customer) before sending, so a message
delivered twice sends nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from domain.promo_model import Announcement, Notification
from domain.promo_ports import AnnouncementQueue, Notifier, PromoUnitOfWork

# Customers per SQS message (about 40 bytes each: far under SQS's 256 KB) and messages per
# SendMessageBatch (SQS's limit).
CUSTOMERS_PER_MESSAGE = 200
MESSAGES_PER_BATCH = 10


@dataclass(frozen=True)
class Announced:
    promo_id: int
    customers: int
    messages: int


def announce(
    uow: PromoUnitOfWork,
    queue: AnnouncementQueue,
    now: datetime,
    chunk: int = CUSTOMERS_PER_MESSAGE,
) -> list[Announced]:
    with uow:
        candidates = uow.promo_notifications.to_announce(now)
    done = []
    for promo_id in candidates:
        with uow:
            promo = uow.promo_notifications.lock_for_announcement(promo_id, now)
            if promo is None:
                continue  # another announcer has it, or it was cancelled meanwhile
            customers = messages = 0
            batch: list[Announcement] = []
            for ids in uow.promo_notifications.audience(promo, chunk):
                for start in range(0, len(ids), CUSTOMERS_PER_MESSAGE):
                    batch.append(
                        Announcement(promo.id, tuple(ids[start : start + CUSTOMERS_PER_MESSAGE]))
                    )
                    if len(batch) == MESSAGES_PER_BATCH:
                        queue.send(batch)
                        messages += len(batch)
                        batch = []
                customers += len(ids)
            if batch:
                queue.send(batch)
                messages += len(batch)
            # Marked announced only once everything is queued (a failure leaves it to the
            # next minute's run).
            queue.flush()
            uow.promo_notifications.mark_announced(promo.id, now)
            uow.commit()
        done.append(Announced(promo.id, customers, messages))
    return done


@dataclass(frozen=True)
class Delivered:
    sent: int
    skipped: int
    promo_running: bool


def deliver(
    uow: PromoUnitOfWork,
    notifier: Notifier,
    message: Announcement,
    clock: Callable[[], datetime],
    lease_seconds: int,
) -> Delivered:
    """Send what this message asks that nobody sent yet; raises if a send failed (after
    releasing the unsent claims, so that the redelivery sends them)."""
    now = clock()
    with uow:
        promo = uow.promo_notifications.running(message.promo_id, now)
        if promo is None:
            # Cancelled or ended since it was queued: nobody is told about it any more.
            return Delivered(0, len(message.customer_ids), False)
        claimed = uow.promo_notifications.claim(promo.id, message.customer_ids, now, lease_seconds)
        uow.commit()
    sent: dict[str, str] = {}
    failure: Exception | None = None
    for customer_id in claimed:
        try:
            sent[customer_id] = notifier.send(
                Notification(promo.id, customer_id, promo.store_id, promo.sku, promo.ends_at)
            )
        except Exception as exc:  # recorded below, then raised: SQS retries
            failure = exc
            break
    with uow:
        uow.promo_notifications.mark_sent(promo.id, sent, clock())
        uow.promo_notifications.release(promo.id, [c for c in claimed if c not in sent])
        uow.commit()
    if failure is not None:
        raise failure
    return Delivered(len(sent), len(message.customer_ids) - len(sent), True)
