"""The scheduled billing run (EventBridge): one SQS message per subscription due.

Streams the eligible subscriptions whose current period has no successful charge yet and
queues one message each, ten per SendMessageBatch, several batches in flight at once;
`handlers/billing_charge.py` charges them.

It is built to be cut off and resumed, never restarted from the top:
- the run of a day streams the eligible set in subscription id order (one server-side
  cursor); every CHECKPOINT_EVERY subscriptions it waits until SQS acknowledged every
  message so far and commits the checkpoint `last_queued_id` on a second connection
  (table billing_run, domain/billing_runs.py);
- it watches the time left and stops a minute before the function's timeout; the next
  invocation (the schedule fires every 15 minutes in the run's window) resumes after the
  checkpoint, with the same planning instant;
- one invocation at a time holds the run (a lease); a finished run is not run again that
  day, so a retry or a second schedule tick queues nothing twice.
The cancellation breaker (docs/money-path.md) is decided once per run day, over the
whole due set, before anything is queued: the first invocation of the day counts the due
set and plans, without queueing, the members it could cancel
(`cancellation_breaker.weigh_cancellations`), counting the cancellations it would cause. Above
BILLING_MAX_CANCELLATIONS it holds them all (billing_hold, held at the run's planning
instant), emits CancellationsHeld (alarmed on), and the stream then queues no
cancellation, in this invocation or any that resumes it (they find the holds dated at the
run's planning instant); charges and abandons are queued as usual.
`make release-cancellations` releases them.
A message can be queued twice only when an invocation dies between SQS's acknowledgement
and the checkpoint (at most CHECKPOINT_EVERY); the ledger charges a period once whatever
the number of messages (`settlement.settle`), so that costs a no-op delivery, never a charge.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from sqlalchemy import Engine, create_engine

from adapters.billing_queue import BATCH_SIZE, SqsBillingQueue
from common import clock, settings
from common.observability import logger, metrics
from domain import (
    audit,
    billing,
    cancellation_breaker,
    club_change_model,
    club_changes,
    forecast,
    forecast_runs,
)
from domain.billing_runs import RunState, run_date_for
from repositories.billing_runs import SqlAlchemyBillingRunRepository
from repositories.unit_of_work import SqlAlchemyUnitOfWork

# SendMessageBatch calls in flight at once: at SQS's ~20 ms a call, 16 queue a million
# subscriptions' 41,000 batches in under a minute (8 took two).
SENDERS = 16
# Subscriptions planned between two checkpoints.
CHECKPOINT_EVERY = 20_000
# Stop planning when less than this is left of the invocation: time to drain the batches
# in flight and commit the checkpoint.
STOP_MARGIN_MS = 60_000
# Longer than the function's timeout (900 s): a dead invocation's lease runs out before
# the next-but-one schedule tick.
LEASE = timedelta(minutes=16)
# Between two looks at the time left.
CHECK_EVERY = 1000
# The run's own statement timeout: the sorted eligible set of a million subscriptions is
# one statement (its first FETCH), longer than the API's DB_STATEMENT_TIMEOUT_MS allows;
# still well inside the function's 900 s.
STATEMENT_TIMEOUT_MS = 300_000


def run_engine() -> Engine:
    """Two connections for the run: the stream, and the checkpoints committed beside it."""
    config = settings.get()
    return create_engine(
        config.resolved_database_url(),
        pool_size=2,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": 5,
            "application_name": "beer-club-billing-run",
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
        # No customer data in logs on error paths (issue 12).
        hide_parameters=True,
    )


def breaker() -> cancellation_breaker.Breaker:
    return cancellation_breaker.Breaker.configured(settings.get())


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
    engine: Engine | None = None,
    current: Callable[[], datetime] = clock.now,
    check_every: int = CHECK_EVERY,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> RunResult:
    """Run (or resume) the billing run of `now`'s day, until done or out of time."""
    own = engine is None
    engine = engine or run_engine()
    try:
        return Run(queue, engine, current, senders).go(
            now, time_left_ms, check_every, checkpoint_every
        )
    finally:
        if own:
            engine.dispose()


class Run:
    def __init__(
        self, queue: Any, engine: Engine, current: Callable[[], datetime], senders: int
    ) -> None:
        self.queue = queue
        self.engine = engine
        self.current = current
        self.senders = senders
        self.pending: Counter[str] = Counter()  # planned since the last checkpoint
        self.batch: list[billing.BillingMessage] = []
        self.last: str | None = None

    def go(
        self,
        now: datetime,
        time_left_ms: Callable[[], float],
        check_every: int,
        checkpoint_every: int,
    ) -> RunResult:
        run_date = run_date_for(now)
        with SqlAlchemyUnitOfWork(self.engine) as uow:
            runs = SqlAlchemyBillingRunRepository(uow.connection)
            state = runs.claim(run_date, now, now + LEASE)
            if state is None:
                held = runs.get(run_date)
                finished = held is not None and held.finished_at is not None
                return RunResult("already finished" if finished else "busy")
            uow.commit()
        # Club-change hook: record changes whose instant passed, cancel interfered ones,
        # before planning (idempotent, so every invocation of the day may do it).
        sweep_club_changes(now)
        config = settings.get()
        self.retry_window = timedelta(days=config.billing_retry_days)
        self.pending_timeout = timedelta(seconds=config.charge_pending_timeout_seconds)
        if state.last_queued_id is None:
            # The first invocation of the day (or one that died before its first
            # checkpoint): the previous run's forecast against what it did, and this run's
            # own forecast, before anything is queued (docs/operators-desk.md).
            record_forecast(self.engine, now, self.pending_timeout, self.retry_window)
        self.hold_cancellations = self._breaker(state)
        self.run_date = run_date
        self.result = RunResult(
            "paused", last_queued_id=state.last_queued_id, invocations=state.invocations
        )
        done = False
        try:
            with ThreadPoolExecutor(max_workers=self.senders) as pool:
                self.sending = Senders(self.queue, pool, self.senders)
                stopped = self._stream(
                    state.planned_at,
                    state.last_queued_id,
                    time_left_ms,
                    check_every,
                    checkpoint_every,
                )
                self._checkpoint()
                done = not stopped
        finally:
            with SqlAlchemyUnitOfWork(self.engine) as tx:
                SqlAlchemyBillingRunRepository(tx.connection).release(
                    run_date, self.current(), done
                )
                tx.commit()
        self.result.status = "finished" if done else "paused"
        return self.result

    def _breaker(self, state: RunState) -> bool:
        """True when this run day's cancellations are held (decided once, before the
        first message of the day is queued; see the module's docstring)."""
        if cancellation_breaker.held_at(SqlAlchemyUnitOfWork(self.engine), state.planned_at):
            return True
        if state.last_queued_id is not None:
            # An earlier invocation decided, and held nothing.
            return False
        summary = cancellation_breaker.RunSummary()
        held = cancellation_breaker.weigh_cancellations(
            SqlAlchemyUnitOfWork(self.engine),
            state.planned_at,
            breaker(),
            summary,
            self.retry_window,
            self.pending_timeout,
        )
        if held:
            logger.error(
                "billing cancellations held by the breaker",
                held=len(summary.held),
                limit=summary.limit,
                due=summary.due,
            )
        # The CancellationsHeldAlarm's metric (serverless.yml).
        metrics.add_metric(name="CancellationsHeld", unit=MetricUnit.Count, value=len(summary.held))
        return held

    def _stream(
        self,
        planned_at: datetime,
        after: str | None,
        time_left_ms: Callable[[], float],
        check_every: int,
        checkpoint_every: int,
    ) -> bool:
        """Plan and send from after `after`; True when it stopped for lack of time."""
        planned = billing.plan(
            SqlAlchemyUnitOfWork(self.engine),
            planned_at,
            retry_window=self.retry_window,
            pending_timeout=self.pending_timeout,
            after=after,
            in_order=True,
        )
        seen = 0
        try:
            for item in planned:
                if item.subscription_id != self.last:
                    # A subscription's messages come together (several periods): the time
                    # and the checkpoint are looked at between subscriptions, never inside
                    # one, so the checkpoint never splits a subscription.
                    if seen and seen % check_every == 0 and time_left_ms() < STOP_MARGIN_MS:
                        return True
                    if seen and seen % checkpoint_every == 0:
                        self._checkpoint()
                    seen += 1
                if item.message is None:
                    self.pending[str(item.settled_as) if item.settled_as else "in flight"] += 1
                elif item.message.step == billing.Step.CANCEL and self.hold_cancellations:
                    self.pending["held"] += 1
                else:
                    self.batch.append(item.message)
                    if len(self.batch) == BATCH_SIZE:
                        self._send()
                self.last = item.subscription_id
        finally:
            planned.close()
        return False

    def _send(self) -> None:
        if self.batch:
            self.sending.submit(self.batch)
            self.pending["queued"] += len(self.batch)
            self.batch = []

    def _checkpoint(self) -> None:
        """Send what is left, wait for SQS to acknowledge everything, then commit."""
        self._send()
        self.sending.drain()
        if self.last is None or self.last == self.result.last_queued_id:
            return
        with SqlAlchemyUnitOfWork(self.engine) as tx:
            SqlAlchemyBillingRunRepository(tx.connection).advance(
                self.run_date,
                self.last,
                self.pending["queued"],
                sum(self.pending.values()) - self.pending["queued"],
                self.current(),
                self.current() + LEASE,
            )
            tx.commit()
        self.result.last_queued_id = self.last
        self.result.counts.update(self.pending)
        self.pending.clear()


def record_forecast(
    engine: Engine, now: datetime, pending_timeout: timedelta, retry_window: timedelta
) -> None:
    """Compare the previous run's forecast with what its workers did, then store this
    run's own forecast unless one was stored for it (the forecast schedule does that).
    The forecast only informs: a failure is logged, and the run goes on."""
    try:
        run_at = forecast.last_run(now)
        comparison = forecast_runs.compare(
            SqlAlchemyUnitOfWork(engine), run_at - timedelta(days=1), run_at, now
        )
        if comparison.get("forecast") is not None:
            logger.info("billing forecast compared", **comparison)
        forecast_runs.before_run(
            SqlAlchemyUnitOfWork(engine),
            SqlAlchemyUnitOfWork(engine),
            run_at,
            now,
            pending_timeout,
            retry_window,
            breaker=breaker(),
        )
    except Exception:
        logger.exception("billing forecast not recorded; the run goes on")


def _time_left(context: Any) -> Callable[[], float]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining if remaining is not None else no_deadline


def sweep_club_changes(now) -> club_change_model.SweepReport:
    """The billing run's pass over club changes (domain/club_changes.py), logged."""
    report = club_changes.sweep(SqlAlchemyUnitOfWork(), now, audit.BILLING_RUN)
    for change in report.applied:
        logger.info(
            "club change applied",
            club_change_id=change.id,
            subscription_id=change.subscription_id,
            target_subscription_id=change.target_subscription_id,
            abandoned_periods=list(change.abandoned_periods),
        )
    for change in report.cancelled:
        logger.info(
            "club change cancelled",
            club_change_id=change.id,
            subscription_id=change.subscription_id,
            target_subscription_id=change.target_subscription_id,
            reason=change.cancel_reason,
        )
    metrics.add_metric(name="ClubChangeApplied", unit=MetricUnit.Count, value=len(report.applied))
    metrics.add_metric(
        name="ClubChangeCancelled", unit=MetricUnit.Count, value=len(report.cancelled)
    )
    return report


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = settings.get()
    if not config.billing_queue_url:
        raise RuntimeError("BILLING_QUEUE_URL is not configured")
    queue = SqsBillingQueue(config.billing_queue_url, connections=SENDERS)
    result = run(queue, clock.now(), _time_left(context))
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
