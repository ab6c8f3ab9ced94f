"""The cancellation breaker of the billing run: at most a share of the run's due set may be
cancelled in one run; above it none of the cancellations is queued, all are held
(billing_hold, audited) until an operator releases them. `produce` is the run's producer
with the breaker in front of the cancellations (domain/billing.py plans them);
`weigh_cancellations` decides it once for a resumable run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain import audit
from domain.audit import Action, AuditEntry
from domain.billing import (
    DEFAULT_PENDING_TIMEOUT,
    DEFAULT_RETRY_WINDOW,
    BillingMessage,
    Planned,
    Step,
    eligible_count,
    plan,
)
from domain.ports import UnitOfWork

# The breaker's default: at most 2% of the due set, and never fewer than 25, per run.
DEFAULT_MAX_CANCELLATIONS = 0.02
DEFAULT_MAX_CANCELLATIONS_FLOOR = 25


@dataclass
class Breaker:
    """At most `max(floor, ceil(fraction * due))` cancellations per run; above it none is
    queued: they are held until an operator releases them (`make release-cancellations`)."""

    fraction: float = DEFAULT_MAX_CANCELLATIONS
    floor: int = DEFAULT_MAX_CANCELLATIONS_FLOOR

    @classmethod
    def configured(cls, config: object) -> Breaker:
        """The breaker of the settings (`billing_max_cancellations` and its floor)."""
        return cls(config.billing_max_cancellations, config.billing_max_cancellations_floor)

    def limit(self, due: int) -> int:
        return max(self.floor, math.ceil(self.fraction * due))

    def trips(self, summary: RunSummary) -> bool:
        """The run's one decision over its whole due set: True when the cancellations it
        counted go above the limit (all of them are then held). Sets `summary.limit`."""
        summary.limit = self.limit(summary.due)
        return len(summary.cancellations) > summary.limit


@dataclass
class RunSummary:
    counts: Counter[str] = field(default_factory=Counter)
    held: list[BillingMessage] = field(default_factory=list)
    limit: int = 0
    due: int = 0
    # The cancellations the run is about to cause, weighed by the breaker at the end.
    cancellations: list[BillingMessage] = field(default_factory=list)
    seen: set[str] = field(default_factory=set, repr=False)

    def add(self, planned: Planned) -> BillingMessage | None:
        """Count one planned item as the run counts it: the due set is every eligible
        subscription once (with or without a message), a cancellation waits for the
        breaker. Returns the message to queue now (a charge or an abandon), if any."""
        message = planned.message
        if message is None:
            self.due += 1
            self.counts[str(planned.settled_as) if planned.settled_as else "in flight"] += 1
            return None
        if message.subscription_id not in self.seen:
            self.due += 1
            self.seen.add(message.subscription_id)
        if message.step == Step.CANCEL:
            self.cancellations.append(message)
            return None
        return message


def produce(
    uow: UnitOfWork,
    now: datetime,
    breaker: Breaker,
    summary: RunSummary,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
    pending_timeout: timedelta = DEFAULT_PENDING_TIMEOUT,
) -> Iterator[BillingMessage]:
    """The run's producer: yields the messages to queue. Charges go at once; the
    cancellations it is about to cause are counted first, and above the breaker's limit
    none of them is yielded: they are held (billing_hold), and `summary.held` says so.
    (The forecast counts and weighs with the same `RunSummary.add` and `Breaker.trips`.)"""
    for planned in plan(uow, now, retry_window=retry_window, pending_timeout=pending_timeout):
        message = summary.add(planned)
        if message is not None:
            summary.counts["queued"] += 1
            yield message
    if _hold_if_tripped(uow, breaker, summary, now):
        return
    for message in summary.cancellations:
        summary.counts["queued"] += 1
        yield message


def weigh_cancellations(
    uow: UnitOfWork,
    now: datetime,
    breaker: Breaker,
    summary: RunSummary,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
    pending_timeout: timedelta = DEFAULT_PENDING_TIMEOUT,
) -> bool:
    """The breaker of a resumable run, decided once over the whole due set before anything
    is queued: counts the due set (every eligible subscription, as `produce` counts it) and
    the cancellations a plan at `now` would cause, queueing nothing, and above the
    breaker's limit holds them all (billing_hold, held at `now`, audited). True when the
    run's cancellations are held; the run then queues none of them (`held_at`).

    `decide` cancels only a subscription with a card report or a declined period whose
    window closed, so only those are planned here: the same decisions as a plan of the
    whole set, without planning the million others (the run plans them once, queueing)."""
    summary.due = eligible_count(uow, now)
    summary.cancellations = [
        planned.message
        for planned in plan(
            uow,
            now,
            retry_window=retry_window,
            pending_timeout=pending_timeout,
            cancellable_only=True,
        )
        if planned.message is not None and planned.message.step == Step.CANCEL
    ]
    return _hold_if_tripped(uow, breaker, summary, now)


def _hold_if_tripped(uow: UnitOfWork, breaker: Breaker, summary: RunSummary, now: datetime) -> bool:
    """The breaker's one decision over the run's due set (`Breaker.trips`): above its limit
    every cancellation the summary counted is held, and `summary.held` lists them."""
    if not breaker.trips(summary):
        return False
    hold(uow, summary.cancellations, now)
    summary.held = list(summary.cancellations)
    summary.counts["held"] += len(summary.held)
    return True


def held_at(uow: UnitOfWork, planned_at: datetime) -> bool:
    """True when the run planned at `planned_at` held its cancellations (even if an
    operator has released them since: they were queued by the release, not the run)."""
    with uow:
        return uow.holds.held_at(planned_at)


def hold(uow: UnitOfWork, messages: list[BillingMessage], now: datetime) -> None:
    """Hold the run's cancellations, dated at its planning instant: one still held from an
    earlier run is dated again (so a resumed invocation of this run finds the day held)
    and audited again, the day's decision being this run's."""
    with uow:
        for message in messages:
            new = uow.holds.hold(message.subscription_id, message.period, message.reason, now)
            again = "" if new else " (still held from an earlier run)"
            uow.audit.add(
                AuditEntry(
                    Action.CANCELLATION_HELD,
                    audit.BILLING_RUN,
                    now,
                    message.subscription_id,
                    message.period,
                    details=f"held by the cancellation breaker{again}: {message.reason}",
                )
            )
        uow.commit()


def held(uow: UnitOfWork) -> list[BillingMessage]:
    """The cancellations the breaker holds now, oldest first."""
    with uow:
        return [
            BillingMessage(sub, period, "-", Step.CANCEL, reason or "")
            for sub, period, reason in uow.holds.open()
        ]


def release_held(uow: UnitOfWork, now: datetime, operator: str) -> list[BillingMessage]:
    """An operator releases every held cancellation; returns them as CANCEL messages for
    the worker (`settle`), which re-reads each ledger row and cancels only what is still
    due. Audited, with the operator's name."""
    with uow:
        released = uow.holds.release(now, operator)
        for sub, period, _reason in released:
            uow.audit.add(
                AuditEntry(
                    Action.CANCELLATION_RELEASED,
                    f"operator:{operator}"[:128],
                    now,
                    sub,
                    period,
                    details="released from the cancellation breaker",
                )
            )
        uow.commit()
    return [
        BillingMessage(sub, period, "-", Step.CANCEL, reason or "")
        for sub, period, reason in released
    ]
