"""The billing run: which subscriptions to charge now, and charging (or ending) each one.

`plan` streams the eligible subscriptions and says, for each, what its periods still need
(a message naming the period and the step: charge, cancel or abandon);
domain/settlement.py carries out one message after re-reading the ledger under lock, with
the same `charges.charge` as the endpoint, so the ledger keeps each period exactly once
however often a message comes.

Only declines (402, 422, a payment-outcome failure) open and fill a period's retry window
(`retry_window` from its first decline). A declined period is retried inside its own
window even after the next period began. When the window closes the period is abandoned,
and the subscription cancelled only if no later period has been paid. Platform failures
(refused credentials, throttling, 5xx, timeouts) never cancel anyone: such a period is
retried until it ends, then abandoned (or settled by reconciliation when its outcome is
unknown). A card report cancels the subscriptions created before it, unless a later
successful charge cleared it. `produce` puts the breaker in front of the cancellations.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from domain import audit, schedules
from domain.audit import Action, AuditEntry
from domain.charges import Charge, ChargeState
from domain.model import SHIPPING_CLUB_STATUSES
from domain.ports import UnitOfWork

# Fixed forever: request ids derived from it must stay the same across deployments.
REQUEST_ID_NAMESPACE = uuid.UUID("6f1c8f2e-5b7d-4e1a-9c3b-2d4e6f8a0b1c")
DEFAULT_RETRY_WINDOW = timedelta(days=5)
DEFAULT_PENDING_TIMEOUT = timedelta(seconds=60)
# States after which a period needs nothing more.
SETTLED = frozenset({ChargeState.SUCCEEDED, ChargeState.ABANDONED})
FAILED = ChargeState.FAILED
# The breaker's default: at most 2% of the due set, and never fewer than 25, per run.
DEFAULT_MAX_CANCELLATIONS = 0.02
DEFAULT_MAX_CANCELLATIONS_FLOOR = 25


class Step(StrEnum):
    """What a billing message asks the worker to do for its period."""

    CHARGE = "charge"
    CANCEL = "cancel"
    ABANDON = "abandon"


class Outcome(StrEnum):
    CHARGED = "charged"
    ALREADY_CHARGED = "already charged"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    # The platform failed or refused us with an answer we relay (400, 404, 409).
    PLATFORM_ERROR = "platform error"
    ABANDONED = "abandoned"


def request_id_for(subscription_id: str, period: str, failed_attempts: int = 0) -> str:
    """The deterministic request id of a period's charge (36 characters).

    After a known refusal the platform may hold a failed order under the previous id,
    so each retry after a refusal gets its own id, still derived from the ledger.
    """
    name = f"{subscription_id}:{period}"
    if failed_attempts:
        name += f":{failed_attempts}"
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, name))


@dataclass(frozen=True)
class Candidate:
    """An eligible subscription as the run streams it."""

    subscription_id: str
    schedule: schedules.Schedule
    started: datetime | None


@dataclass(frozen=True)
class CardReport:
    """The platform told us this customer's card can no longer be charged."""

    customer_id: str
    reason: str
    reported_at: datetime


@dataclass(frozen=True)
class LedgerState:
    state: ChargeState
    attempts: int
    period: str = ""
    billing_date: datetime | None = None
    created_at: datetime | None = None
    declined_at: datetime | None = None
    last_attempt_at: datetime | None = None


@dataclass(frozen=True)
class BillingMessage:
    """One subscription to settle: the body of one queue message."""

    subscription_id: str
    period: str
    request_id: str
    step: Step = Step.CHARGE
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        data = asdict(self)
        data["step"] = self.step.value
        return data

    @classmethod
    def from_dict(cls, data: object) -> BillingMessage:
        if not isinstance(data, dict):
            raise ValueError("a billing message is a JSON object")
        values = {name: data.get(name) for name in ("subscription_id", "period", "request_id")}
        if not all(isinstance(v, str) and 0 < len(v) <= 36 for v in values.values()):
            raise ValueError("a billing message needs subscription_id, period and request_id")
        try:
            # A message from before steps existed only ever charges.
            step = Step(data.get("step") or Step.CHARGE)
        except ValueError:
            raise ValueError("a billing message's step is charge, cancel or abandon") from None
        reason = data.get("reason") if isinstance(data.get("reason"), str) else ""
        return cls(**values, step=step, reason=reason[:256])


@dataclass(frozen=True)
class Planned:
    """The run's decision for one eligible subscription: a message, or why none is needed."""

    message: BillingMessage | None
    settled_as: ChargeState | None = None
    subscription_id: str | None = None


def window_closed(row: LedgerState | Charge, now: datetime, retry_window: timedelta) -> bool:
    """A declined period's retry window opened at its first decline (rows from before
    revision 0007: the later of billing date and first attempt)."""
    return row.declined_at is not None and now >= row.declined_at + retry_window


def _stale(row: LedgerState, now: datetime, pending_timeout: timedelta) -> bool:
    return row.last_attempt_at is not None and row.last_attempt_at <= now - pending_timeout


def decide(
    candidate: Candidate,
    current: schedules.Period | None,
    rows: list[LedgerState],
    card: CardReport | None,
    latest_paid: datetime | None,
    now: datetime,
    retry_window: timedelta,
    pending_timeout: timedelta,
) -> tuple[list[BillingMessage], ChargeState | None]:
    """What one subscription needs now: its messages, and how its current period stands.

    `rows` are its ledger rows of the current period and every unsettled one."""
    sub = candidate.subscription_id
    now_row = next((r for r in rows if current and r.period == current.key), None)
    settled = now_row.state if now_row is not None and now_row.state in SETTLED else None
    if card is not None and settled is None and current is not None:
        reason = f"card {card.reason} (reported {card.reported_at:%Y-%m-%d})"
        cancel = BillingMessage(sub, current.key, "-", Step.CANCEL, reason)
        return [cancel], None
    messages: list[BillingMessage] = []
    earlier = [r for r in rows if r is not now_row and r.state not in SETTLED]
    for row in sorted(earlier, key=lambda r: (r.billing_date or datetime.min, r.period)):
        if row.state == ChargeState.ERROR:
            # A period that ended after platform failures only: nobody is cancelled.
            messages.append(BillingMessage(sub, row.period, "-", Step.ABANDON))
        elif row.state != FAILED:
            continue  # unknown or pending: reconciliation asks the platform
        elif not window_closed(row, now, retry_window):
            retry = request_id_for(sub, row.period, row.attempts)
            messages.append(BillingMessage(sub, row.period, retry))
        elif latest_paid is not None and row.billing_date and latest_paid > row.billing_date:
            messages.append(BillingMessage(sub, row.period, "-", Step.ABANDON))
        else:
            reason = f"no successful charge for {row.period} within {window_days(retry_window)}"
            return [BillingMessage(sub, row.period, "-", Step.CANCEL, reason)], settled
    if current is None or settled is not None:
        return messages, settled
    if (
        now_row is not None
        and now_row.state == FAILED
        and window_closed(now_row, now, retry_window)
    ):
        reason = f"no successful charge for {current.key} within {window_days(retry_window)}"
        return [BillingMessage(sub, current.key, "-", Step.CANCEL, reason)], None
    in_flight = now_row is not None and now_row.state == ChargeState.PENDING
    if in_flight and not _stale(now_row, now, pending_timeout):
        return messages, None
    failed = now_row.attempts if now_row is not None and now_row.state == FAILED else 0
    messages.append(BillingMessage(sub, current.key, request_id_for(sub, current.key, failed)))
    return messages, None


def plan(
    uow: UnitOfWork,
    now: datetime,
    chunk: int = 1000,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
    pending_timeout: timedelta = DEFAULT_PENDING_TIMEOUT,
    after: str | None = None,
    in_order: bool = False,
    cancellable_only: bool = False,
) -> Iterator[Planned]:
    """Stream every eligible subscription with what its periods still need.

    The eligible set comes from a server-side cursor, `chunk` rows at a time, and the
    ledger (current and unsettled periods) and card reports are read once per chunk:
    memory stays bounded by the chunk, not the set. `in_order`: by subscription id, from
    after `after` (the run's checkpoint). Several messages of one subscription come
    together, each Planned naming the subscription. `cancellable_only`: only the
    subscriptions `decide` could cancel (a card report, or a declined period whose window
    closed); the others' plans hold no cancellation.
    """
    with uow:
        options: dict = {"after": after, "in_order": True} if in_order or after else {}
        if cancellable_only:
            options["declined_before"] = now - retry_window
        for rows in uow.billing.eligible(now, SHIPPING_CLUB_STATUSES, chunk, **options):
            periods = {
                row.subscription_id: schedules.period_in_effect(row.schedule, now, row.started)
                for row in rows
            }
            keys = [(sub, period.key) for sub, period in periods.items() if period is not None]
            ledger = uow.billing.open_ledger(list(periods), keys)
            cards = uow.billing.card_reports(list(periods))
            for row in rows:
                sub = row.subscription_id
                recorded = ledger.get(sub, [])
                latest_paid = None
                if any(r.state == FAILED and window_closed(r, now, retry_window) for r in recorded):
                    latest_paid = uow.charges.latest_paid(sub)
                messages, settled = decide(
                    row,
                    periods[sub],
                    recorded,
                    cards.get(sub),
                    latest_paid,
                    now,
                    retry_window,
                    pending_timeout,
                )
                if not messages:
                    yield Planned(None, settled, sub)
                for message in messages:
                    yield Planned(message, settled, sub)


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


def eligible_count(uow: UnitOfWork, now: datetime) -> int:
    """How many subscriptions a run at `now` looks at (for a progress bar)."""
    with uow:
        return uow.billing.count_eligible(now, SHIPPING_CLUB_STATUSES)


def window_days(window: timedelta) -> str:
    """A retry window as its reasons write it: "5 days"."""
    days = window / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")
