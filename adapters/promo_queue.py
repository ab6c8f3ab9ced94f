"""The promo announcements' SQS queue (ten messages per SendMessageBatch), or, locally,
a queue that hands each message straight to the worker's function."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

import orjson

from adapters.sqs_batches import BATCH_SIZE, QueueSendFailed, SqsBatchQueue
from domain.promo_model import Announcement

__all__ = ["BATCH_SIZE", "QueueSendFailed", "SqsAnnouncementQueue"]

# QueueSendFailed here: the promo stays unannounced and the next minute's run announces it
# again (customers already told are not told twice).


class SqsAnnouncementQueue(SqsBatchQueue):
    noun = "promo announcement"

    def flush(self) -> None:
        """Every send() has returned: nothing is pending."""


class ParallelSender:
    """Several SendMessageBatch calls in flight (a 5 km promo in a city is hundreds of
    them), but never more than a few batches held in memory; flush() waits for all and
    raises the first failure."""

    def __init__(self, queue: SqsAnnouncementQueue, pool: Executor, senders: int) -> None:
        self.queue = queue
        self.pool = pool
        self.senders = senders
        self.in_flight: deque[Future[None]] = deque()

    def send(self, messages: Sequence[Announcement]) -> None:
        self.in_flight.append(self.pool.submit(self.queue.send, list(messages)))
        while len(self.in_flight) >= 2 * self.senders:
            self.in_flight.popleft().result()

    def flush(self) -> None:
        while self.in_flight:
            self.in_flight.popleft().result()


class InlineQueue:
    """Local runs: no SQS, each message is delivered at once (through its JSON form)."""

    def __init__(self, deliver: Callable[[Announcement], Any]) -> None:
        self.deliver = deliver

    def send(self, messages: Sequence[Announcement]) -> None:
        for message in messages:
            self.deliver(Announcement.from_dict(orjson.loads(orjson.dumps(message.to_dict()))))

    def flush(self) -> None:
        """Everything was delivered in send()."""
