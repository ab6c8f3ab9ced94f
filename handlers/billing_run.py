"""The scheduled billing run (EventBridge): one SQS message per subscription due.

Streams the eligible subscriptions whose current period has no successful charge yet and
queues one message each, ten per SendMessageBatch, several batches in flight at once;
`handlers/billing_charge.py` charges them.

It is built to be cut off and resumed, never restarted from the top:
- the run of a day plans in slices of subscription ids, in id order; after each slice
  (and before stopping) it waits until SQS acknowledged every message of it and then
  commits the checkpoint `last_queued_id` (table billing_run, domain/billing_runs.py);
- it watches the time left and stops a minute before the function's timeout; the next
  invocation (the schedule fires every 15 minutes in the run's window) resumes after the
  checkpoint, with the same planning instant;
- one invocation at a time holds the run (a lease); a finished run is not run again that
  day, so a retry or a second schedule tick queues nothing twice.
A message can be queued twice only when an invocation dies between SQS's acknowledgement
and the checkpoint (at most one slice); the ledger charges a period once whatever the
number of messages (`billing.settle`), so that costs a no-op delivery, never a charge.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from adapters.billing_queue import BATCH_SIZE, SqsBillingQueue
from common import clock, settings
from common.observability import logger, metrics
from domain import billing
from domain.billing_runs import run_date_for
from repositories.billing_runs import SqlAlchemyBillingRunRepository
from repositories.unit_of_work import SqlAlchemyUnitOfWork

SENDERS = 8
# Subscriptions planned between two checkpoints.
SLICE = 20_000
# Stop planning when less than this is left of the invocation: time to drain the batches
# in flight and commit the checkpoint.
STOP_MARGIN_MS = 60_000
# Longer than the function's timeout (900 s): a dead invocation's lease runs out before
# the next-but-one schedule tick.
LEASE = timedelta(minutes=16)
# Between two looks at the time left.
CHECK_EVERY = 1000


class Senders:
    """SendMessageBatch calls in flight on a thread pool, at most 2 x `senders` held."""

    def __init__(self, queue: Any, pool: ThreadPoolExecutor, senders: int) -> None:
        self.queue = queue
        self.pool = pool
        self.limit = 2 * senders
        self.in_flight: deque[Future[None]] = deque()

    def submit(self, messages: list[billing.BillingMessage]) -> None:
        self.in_flight.append(self.pool.submit(self.queue.send, messages))
        while len(self.in_flight) >= self.limit:
            self.in_flight.popleft().result()

    def drain(self) -> None:
        """Wait for every batch; the first failure is raised once all have ended."""
        failure: BaseException | None = None
        while self.in_flight:
            try:
                self.in_flight.popleft().result()
            except Exception as exc:  # re-raised below, after the others
                failure = failure or exc
        if failure is not None:
            raise failure


@dataclass
class RunResult:
    status: str  # finished | paused | busy | already finished
    counts: Counter[str] = field(default_factory=Counter)
    last_queued_id: str | None = None
    invocations: int = 0

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, **self.counts}


def no_deadline() -> float:
    return float("inf")


def run(
    queue: Any,
    now: datetime,
    time_left_ms: Callable[[], float] = no_deadline,
    senders: int = SENDERS,
    slice_size: int = SLICE,
    uow_factory: Callable[[], SqlAlchemyUnitOfWork] = SqlAlchemyUnitOfWork,
    current: Callable[[], datetime] = clock.now,
    check_every: int = CHECK_EVERY,
) -> RunResult:
    """Run (or resume) the billing run of `now`'s day, until done or out of time."""
    run_date = run_date_for(now)
    with uow_factory() as uow:
        runs = SqlAlchemyBillingRunRepository(uow.connection)
        state = runs.claim(run_date, now, now + LEASE)
        if state is None:
            held = runs.get(run_date)
            finished = held is not None and held.finished_at is not None
            return RunResult("already finished" if finished else "busy")
        uow.commit()
    result = RunResult("paused", last_queued_id=state.last_queued_id, invocations=state.invocations)
    done = False
    try:
        with ThreadPoolExecutor(max_workers=senders) as pool:
            sending = Senders(queue, pool, senders)
            while not done:
                counts, last, seen, stopped = _slice(
                    sending,
                    billing.plan(
                        uow_factory(),
                        state.planned_at,
                        after=result.last_queued_id,
                        limit=slice_size,
                    ),
                    time_left_ms,
                    check_every,
                )
                # Everything of the slice is acknowledged before the checkpoint moves.
                sending.drain()
                done = seen < slice_size and not stopped
                if last is not None:
                    with uow_factory() as uow:
                        SqlAlchemyBillingRunRepository(uow.connection).advance(
                            run_date,
                            last,
                            counts["queued"],
                            seen - counts["queued"],
                            current(),
                            current() + LEASE,
                        )
                        uow.commit()
                    result.last_queued_id = last
                result.counts.update(counts)
                if stopped:
                    break
    finally:
        with uow_factory() as uow:
            SqlAlchemyBillingRunRepository(uow.connection).release(run_date, current(), done)
            uow.commit()
    result.status = "finished" if done else "paused"
    return result


def _slice(
    sending: Senders,
    planned: Generator[billing.Planned, None, None],
    time_left_ms: Callable[[], float],
    check_every: int,
) -> tuple[Counter[str], str | None, int, bool]:
    """Plan one slice and hand its batches to the senders; stops early when time is short."""
    counts: Counter[str] = Counter()
    batch: list[billing.BillingMessage] = []
    last: str | None = None
    seen = 0
    stopped = False
    try:
        for item in planned:
            seen += 1
            last = item.subscription_id
            if item.message is None:
                counts[str(item.settled_as)] += 1
            else:
                batch.append(item.message)
                if len(batch) == BATCH_SIZE:
                    sending.submit(batch)
                    counts["queued"] += len(batch)
                    batch = []
            if seen % check_every == 0 and time_left_ms() < STOP_MARGIN_MS:
                stopped = True
                break
    finally:
        planned.close()
    if batch:
        sending.submit(batch)
        counts["queued"] += len(batch)
    return counts, last, seen, stopped


def _time_left(context: Any) -> Callable[[], float]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining if remaining is not None else no_deadline


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = settings.get()
    if not config.billing_queue_url:
        raise RuntimeError("BILLING_QUEUE_URL is not configured")
    result = run(SqsBillingQueue(config.billing_queue_url), clock.now(), _time_left(context))
    logger.info(
        "billing run " + result.status,
        last_queued_id=result.last_queued_id,
        invocation=result.invocations,
        **result.counts,
    )
    metrics.add_metric(name="BillingQueued", unit=MetricUnit.Count, value=result.counts["queued"])
    if result.status == "paused":
        metrics.add_metric(name="BillingRunPaused", unit=MetricUnit.Count, value=1)
    return result.summary()
