"""The daily billing run carried out in-process: `make billing-run` (scripts/billing_run.py)
and every simulated day of `ops simulate` (ops/simulation.py) run this one function.

In order, as the scheduled run does them (handlers/billing_run.py, which queues the same
producer's messages to SQS instead of settling them here): the club-change sweep; the
run's own forecast, stored unless one was stored for this instant; the producer
(`cancellation_breaker.produce`: the plan, charges first, the cancellations weighed once by the
breaker over the whole due set and held above its limit); the worker's `settlement.settle`
for each message; then the forecast compared with what the run audited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain import (
    audit,
    billing,
    cancellation_breaker,
    club_changes,
    errors,
    forecast,
    forecast_runs,
    settlement,
)
from domain.club_change_model import SweepReport
from domain.ports import Ecommerce, UnitOfWork

# How the messages are settled: `map` one at a time as they are produced, or a thread
# pool's `map` (several at once, as the queue's consumers are).
Settler = Callable[
    [Callable[[billing.BillingMessage], Any], Iterable[billing.BillingMessage]], Iterator[Any]
]


@dataclass
class DailyRun:
    now: datetime
    sweep: SweepReport
    summary: cancellation_breaker.RunSummary
    # What settling the messages came to, how many of each (None: the platform failed,
    # or a charge of the period was in flight: the queue would deliver it again).
    outcomes: Counter[billing.Outcome | None] = field(default_factory=Counter)
    comparison: dict[str, Any] = field(default_factory=dict)


def run(
    new_uow: Callable[[], UnitOfWork],
    platform: Ecommerce,
    clock: Callable[[], datetime],
    breaker: cancellation_breaker.Breaker,
    pending_timeout: timedelta,
    retry_window: timedelta,
    settle_all: Settler = map,
    on_settled: Callable[[billing.BillingMessage, billing.Outcome | None], None] | None = None,
) -> DailyRun:
    """The run at `clock()`; `on_settled` sees each message as it is settled."""
    now = clock()
    # Club-change hook: record changes whose instant passed, cancel interfered ones.
    swept = club_changes.sweep(new_uow(), now, audit.BILLING_RUN)
    # The run's own forecast first (after the sweep: what the run will plan).
    forecast_runs.before_run(
        new_uow(), new_uow(), now, now, pending_timeout, retry_window, breaker=breaker
    )
    done = DailyRun(now, swept, cancellation_breaker.RunSummary())

    def settle(message: billing.BillingMessage) -> tuple[billing.BillingMessage, Any]:
        try:
            return message, settlement.settle_message(
                new_uow(), platform, message, clock, pending_timeout, retry_window
            )
        except (errors.PlatformError, errors.ChargeInProgress):
            return message, None

    # Streamed: `map` settles each message as the producer yields it.
    produced = cancellation_breaker.produce(
        new_uow(), now, breaker, done.summary, retry_window, pending_timeout
    )
    for message, outcome in settle_all(settle, produced):
        done.outcomes[outcome] += 1
        if on_settled is not None:
            on_settled(message, outcome)
    done.comparison = forecast_runs.compare(new_uow(), now, now + forecast.DAY, clock())
    return done
