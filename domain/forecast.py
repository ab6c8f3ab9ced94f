"""What the daily run at an instant will do: the run's own plan and decisions, clock set.

`lines` walks `billing.plan(at)`: the run's own producer, whose `billing.decide` says for
every eligible subscription which periods to charge, retry, abandon or end (the money
path, docs/money-path.md), assuming nothing happens until `at`. Each planned message is
one line; the forecast only reads, per chunk, what it reports beside the decision (club,
SKU, which attempt, a return from pause). So the forecast cannot disagree with the run
by construction; `compare` checks it against what a run wrote to the audit anyway, and
the run records that comparison. (The worker's `settle` re-reads the ledger under lock
and asks `billing.decide` again: a charge is carried out only if it is still planned.)

Two things the run decides over the whole plan are applied the same way: the
cancellation breaker (the run's `RunSummary.add` counts the due set and `Breaker.trips`
weighs the cancellations, so held ones read `cancel held: ...`), and members' club
changes taking effect (domain/forecast_changes.py names what the plan does for them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from domain import billing, cancellation_breaker, forecast_changes
from domain.billing import Step
from domain.forecast_model import CANCEL, HELD, RETRY, ClubChangeTaking, Inputs, Line
from domain.ports import UnitOfWork

__all__ = ["ClubChangeTaking", "Forecast", "Inputs", "Line", "compute", "line_for"]

# The daily run's schedule (functions.yml: cron(0 6 * * ? *)).
RUN_TIME = time(6, 0)
DAY = timedelta(days=1)


def next_run(now: datetime) -> datetime:
    """The first daily run at or after `now`."""
    today = datetime.combine(now.date(), RUN_TIME)
    return today if today >= now else today + DAY


def _last(attempt: int, now: datetime, closes: datetime) -> int:
    """The number of the last attempt if daily runs follow this one until the window closes."""
    return attempt + max(0, -(-(closes - now) // timedelta(days=1)) - 1)


def line_for(
    message: billing.BillingMessage, inputs: Inputs, at: datetime, retry_window: timedelta
) -> Line:
    """The forecast's line of one planned message: the plan's step, named more precisely
    where it helps (which attempt, why a cancellation, a return from pause)."""
    sub, club, sku = message.subscription_id, inputs.club_id, inputs.target.sku_id
    ledger = inputs.ledgers.get(message.period)
    if message.step == Step.CANCEL:
        why = "card unavailable" if message.reason.startswith("card ") else "window closing"
        return Line(sub, club, sku, message.period, f"{CANCEL}{why}", reason=message.reason)
    if message.step == Step.ABANDON:
        last = ledger.failure_reason if ledger is not None else None
        return Line(sub, club, sku, message.period, "abandon", reason=last)
    if ledger is None or ledger.attempts == 0:
        # The period's first attempt; a decline today would open a window of its own.
        closes = at + retry_window
        reason = "returns from pause" if inputs.returns_from_pause(at) else None
        return Line(sub, club, sku, message.period, "charge", 1, _last(1, at, closes), reason)
    attempt = ledger.attempts + 1
    # Only declines open and fill the window; platform failures retry until the period ends.
    most = _last(attempt, at, ledger.declined_at + retry_window) if ledger.declined_at else None
    reason = ledger.failure_reason or (
        f"HTTP {ledger.platform_status}" if ledger.platform_status else ledger.state.value
    )
    return Line(sub, club, sku, message.period, RETRY, attempt, most, reason)


def held(line: Line) -> Line:
    """A cancellation line when the run's breaker holds the day's cancellations."""
    if not line.action.startswith(CANCEL):
        return line
    return replace(line, action=HELD + line.action.removeprefix(CANCEL))


def lines(
    uow: UnitOfWork,
    reader: UnitOfWork,
    at: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta = billing.DEFAULT_RETRY_WINDOW,
    chunk: int = 1000,
) -> Iterator[Line | billing.Planned]:
    """Every planned item of the run (billing.Planned, in the plan's order), each message
    followed by its line.

    `uow` streams the plan; `reader` (another unit of work) reads the inputs per chunk.
    """
    batch: list[billing.Planned] = []

    def flush() -> Iterator[Line | billing.Planned]:
        with reader:
            found = reader.forecasts.inputs(sorted({p.subscription_id for p in batch}), at)
        for planned in batch:
            yield planned
            inputs = found.get(planned.message.subscription_id)
            if inputs is None:  # deleted since the plan read it
                continue
            yield line_for(planned.message, inputs, at, retry_window)
        batch.clear()

    planned_by_run = billing.plan(
        uow, at, chunk, retry_window=retry_window, pending_timeout=pending_timeout
    )
    for planned in planned_by_run:
        if planned.message is None:
            yield planned
            continue
        batch.append(planned)
        if len(batch) >= chunk:
            yield from flush()
    if batch:
        yield from flush()


@dataclass
class Forecast:
    at: datetime
    lines: list[Line]
    summary: list[dict[str, Any]]
    settled: dict[str, int]
    # The run's breaker over this plan: due, cancellations, limit, held.
    breaker: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, details: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at.isoformat(),
            "summary": self.summary,
            "already_settled": self.settled,
            "breaker": self.breaker,
        }
        if details:
            data["details"] = [line.row() for line in self.lines]
        return data


def summarize(
    items: Iterable[Line], excluded: Iterable[tuple[int | None, int | None, str, int]] = ()
) -> list[dict[str, Any]]:
    """Per club and SKU: how many subscriptions each action concerns (and returns from
    pause, members joining by a club change), and how many the run will not look at, by
    why ("excluded: its status is PAUSADO")."""
    groups: dict[tuple[int | None, int | None], Counter[str]] = {}
    for club_id, sku, reason, count in excluded:
        groups.setdefault((club_id, sku), Counter())[f"excluded: {reason}"] += count
    for line in items:
        counts = groups.setdefault((line.club_id, line.sku), Counter())
        counts[line.action] += 1
        also = line.also_counted_as()
        if also is not None and also != line.action:
            counts[also] += 1
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or 0))
    return [
        {"club_id": club_id, "sku": sku, **dict(sorted(counts.items()))}
        for (club_id, sku), counts in ordered
    ]


def compute(
    uow: UnitOfWork,
    reader: UnitOfWork,
    at: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta = billing.DEFAULT_RETRY_WINDOW,
    excluded: bool = False,
    breaker: cancellation_breaker.Breaker | None = None,
) -> Forecast:
    """The forecast of the run at `at`; `excluded` also counts, per club, the members the
    run will not look at and why (a scan of subscription_now: not for the run itself).
    `breaker`: the run's (default: the defaults of the settings)."""
    breaker = breaker or cancellation_breaker.Breaker()
    with reader:
        changes = reader.forecasts.club_changes(at, at - DAY)
        # A resumed run keeps the decision its first invocation made (handlers/billing_run).
        already_held = reader.holds.held_at(at)
    targets = {change.target_subscription_id: change for change in changes}
    found: list[Line] = []
    run = cancellation_breaker.RunSummary()
    target_states: dict[str, Any] = {}
    for item in lines(uow, reader, at, pending_timeout, retry_window):
        if isinstance(item, Line):
            change = targets.get(item.subscription_id)
            found.append(forecast_changes.label(item, change) if change else item)
            continue
        run.add(item)  # the due set and the cancellations, counted as the run counts them
        if item.message is None and item.subscription_id in targets:
            target_states[item.subscription_id] = item.settled_as or "in flight"
    holds = breaker.trips(run) or already_held
    if holds:
        found = [held(line) for line in found]
    planned = {(line.subscription_id, line.period) for line in found}
    found += forecast_changes.lines(changes, planned, target_states)
    found.sort(key=lambda line: (line.subscription_id, line.period))
    left_out: list[tuple[int | None, int | None, str, int]] = []
    if excluded:
        with reader:
            left_out = reader.forecasts.excluded(at)
    settled = {name: count for name, count in run.counts.items() if count}
    verdict = {
        "due": run.due,
        "cancellations": len(run.cancellations),
        "limit": run.limit,
        "held": holds,
    }
    return Forecast(at, found, summarize(found, left_out), settled, verdict)


def last_run(now: datetime) -> datetime:
    """The nominal instant of the latest daily run at or before `now`."""
    today = datetime.combine(now.date(), RUN_TIME)
    return today if today <= now else today - DAY
