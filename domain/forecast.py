"""What the daily run at an instant will do: the run's own plan and decisions, clock set.

`lines` walks `billing.plan(at)`: the run's own producer, whose `billing.decide` says for
every eligible subscription which periods to charge, retry, abandon or end (the money
path, docs/money-path.md), assuming nothing happens until `at`. Each planned message is
one line; the forecast only reads, per chunk, what it reports beside the decision (club,
SKU, which attempt, a return from pause). So the forecast cannot disagree with the run
by construction; `compare` checks it against what a run wrote to the audit anyway, and
the run records that comparison. (The worker's `settle` re-reads the ledger under lock
and asks `billing.decide` again: a charge is carried out only if it is still planned.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from domain import billing
from domain.billing import CardReport, Step
from domain.charges import Charge, ChargeTarget
from domain.model import AUTOMATIC_RETURN_DETAILS, SubscriptionStatus
from domain.ports import UnitOfWork

# The daily run's schedule (functions.yml: cron(0 6 * * ? *)).
RUN_TIME = time(6, 0)
# What the run does for the actions a forecast compares (the rest writes nothing).
RETRY = "retry"
ACTING = frozenset({Step.CHARGE.value, RETRY, Step.CANCEL.value})


def next_run(now: datetime) -> datetime:
    """The first daily run at or after `now`."""
    today = datetime.combine(now.date(), RUN_TIME)
    return today if today >= now else today + timedelta(days=1)


@dataclass(frozen=True)
class Inputs:
    """What settle reads about one subscription, plus what the forecast reports with it."""

    target: ChargeTarget
    # Its ledger rows by period (the current one and any earlier one).
    ledgers: dict[str, Charge]
    card: CardReport | None
    club_id: int | None = None
    since: datetime | None = None
    since_details: str | None = None
    status_before: int | None = None

    def with_card(self, card: CardReport) -> Inputs:
        return replace(self, card=card)

    def returns_from_pause(self, at: datetime) -> bool:
        """ACTIVE again since the previous daily run, after a pause."""
        if self.since is None or self.since <= at - timedelta(days=1):
            return False
        return (
            self.status_before == SubscriptionStatus.PAUSED
            or self.since_details == AUTOMATIC_RETURN_DETAILS
        )


@dataclass(frozen=True)
class Line:
    """One subscription in a forecast: the action, and for a charge which attempt."""

    subscription_id: str
    club_id: int | None
    sku: int | None
    period: str
    action: str
    attempt: int | None = None
    max_attempts: int | None = None
    reason: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "club_id": self.club_id,
            "sku": self.sku,
            "period": self.period,
            "action": self.action,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "reason": self.reason,
        }

    @classmethod
    def from_row(cls, row: Any) -> Line:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subscription_id, self.period, self.action)


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
        return Line(sub, club, sku, message.period, f"cancel: {why}", reason=message.reason)
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


def lines(
    uow: UnitOfWork,
    reader: UnitOfWork,
    at: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta = billing.DEFAULT_RETRY_WINDOW,
    chunk: int = 1000,
) -> Iterator[Line | billing.Planned | billing.BillingMessage]:
    """Every planned message followed by its line; settled ones come back as the plan
    said them.

    `uow` streams the plan; `reader` (another unit of work) reads the inputs per chunk.
    """
    batch: list[billing.BillingMessage] = []

    def flush() -> Iterator[Line | billing.BillingMessage]:
        with reader:
            found = reader.forecasts.inputs(sorted({m.subscription_id for m in batch}), at)
        for message in batch:
            yield message
            inputs = found.get(message.subscription_id)
            if inputs is None:  # deleted since the plan read it
                continue
            yield line_for(message, inputs, at, retry_window)
        batch.clear()

    planned_by_run = billing.plan(
        uow, at, chunk, retry_window=retry_window, pending_timeout=pending_timeout
    )
    for planned in planned_by_run:
        if planned.message is None:
            yield planned
            continue
        batch.append(planned.message)
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
    # The plan's messages, in its order: a local run settles exactly these.
    messages: list[billing.BillingMessage] = field(default_factory=list)

    def to_dict(self, details: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at.isoformat(),
            "summary": self.summary,
            "already_settled": self.settled,
        }
        if details:
            data["details"] = [line.row() for line in self.lines]
        return data


def summarize(
    items: Iterable[Line], excluded: Iterable[tuple[int | None, int | None, str, int]] = ()
) -> list[dict[str, Any]]:
    """Per club and SKU: how many subscriptions each action concerns, and how many the
    run will not look at, by why ("excluded: its status is PAUSADO")."""
    groups: dict[tuple[int | None, int | None], Counter[str]] = {}
    for club_id, sku, reason, count in excluded:
        groups.setdefault((club_id, sku), Counter())[f"excluded: {reason}"] += count
    for line in items:
        counts = groups.setdefault((line.club_id, line.sku), Counter())
        counts[line.action] += 1
        if line.reason == "returns from pause":
            counts["returns from pause"] += 1
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
    messages: bool = True,
) -> Forecast:
    """The forecast of the run at `at`; `excluded` also counts, per club, the members the
    run will not look at and why (a scan of subscription_now: not for the run itself).
    `messages=False`: the plan's messages are not kept (only a local run settles them; at
    a million they would double what the lines hold in memory)."""
    found: list[Line] = []
    settled: Counter[str] = Counter()
    kept: list[billing.BillingMessage] = []
    for item in lines(uow, reader, at, pending_timeout, retry_window):
        if isinstance(item, Line):
            found.append(item)
        elif isinstance(item, billing.BillingMessage):
            if messages:
                kept.append(item)
        else:
            settled[str(item.settled_as) if item.settled_as else "in flight"] += 1
    found.sort(key=lambda line: line.subscription_id)
    left_out: list[tuple[int | None, int | None, str, int]] = []
    if excluded:
        with reader:
            left_out = reader.forecasts.excluded(at)
    return Forecast(at, found, summarize(found, left_out), dict(settled), kept)


def store(uow: UnitOfWork, forecast: Forecast, computed_at: datetime) -> None:
    with uow:
        summary = {"clubs": forecast.summary, "already_settled": forecast.settled}
        uow.forecasts.store(forecast.at, computed_at, summary, forecast.lines)
        uow.commit()


def _acted(lines_: Iterable[Line]) -> set[tuple[str, str, str]]:
    """The (subscription, period, action) a forecast says the run writes."""
    keys = set()
    for line in lines_:
        if line.action.startswith("cancel"):
            keys.add((line.subscription_id, line.period, "cancel"))
        elif line.action in (Step.CHARGE.value, RETRY):
            keys.add((line.subscription_id, line.period, line.action))
    return keys


def compare(uow: UnitOfWork, run_at: datetime, until: datetime, now: datetime) -> dict[str, Any]:
    """The stored forecast of the run at `run_at` against what the billing run audited
    from then until `until` or the next stored run, whichever comes first; recorded with
    the forecast and returned."""
    with uow:
        stored = uow.forecasts.stored(run_at)
        if stored is None:
            return {"run_at": run_at.isoformat(), "forecast": None}
        # What a later run (it stored its own forecast) did is not this run's doing.
        later = uow.forecasts.next_run_after(run_at)
        if later is not None:
            until = min(until, later)
        expected = _acted(uow.forecasts.lines(run_at))
        actual = set()
        for subscription_id, period, action, attempt in uow.forecasts.actual(run_at, until):
            if action == "cancellation":
                actual.add((subscription_id, period, "cancel"))
            else:
                actual.add((subscription_id, period, "charge" if attempt == 1 else "retry"))
        comparison = {
            "run_at": run_at.isoformat(),
            "forecast": len(expected),
            "actual": len(actual),
            "agreed": expected == actual,
            "only_forecast": sorted(map(list, expected - actual))[:100],
            "only_actual": sorted(map(list, actual - expected))[:100],
        }
        uow.forecasts.record_comparison(run_at, now, comparison)
        uow.commit()
    return comparison


def last_run(now: datetime) -> datetime:
    """The nominal instant of the latest daily run at or before `now`."""
    today = datetime.combine(now.date(), RUN_TIME)
    return today if today <= now else today - timedelta(days=1)


def before_run(
    uow: UnitOfWork,
    reader: UnitOfWork,
    run_at: datetime,
    now: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta = billing.DEFAULT_RETRY_WINDOW,
) -> bool:
    """Store the forecast of the run at `run_at` unless one was stored for it before;
    True when it was computed now."""
    with uow:
        if uow.forecasts.stored(run_at) is not None:
            return False
    store(uow, compute(uow, reader, run_at, pending_timeout, retry_window, messages=False), now)
    return True


def answer(
    uow: UnitOfWork,
    reader: UnitOfWork,
    at: datetime,
    club_id: int | None,
    after: str | None,
    limit: int,
    pending_timeout: timedelta,
    retry_window: timedelta = billing.DEFAULT_RETRY_WINDOW,
) -> dict[str, Any]:
    """The per-club summary and one page of details (by subscription id): from the
    stored forecast of the run at `at` when there is one (a million lines are read a page
    at a time), else computed now."""
    with uow:
        stored = uow.forecasts.stored(at)
        if stored is not None:
            page = uow.forecasts.page(at, club_id, after, limit)
            summary = stored["summary"]
            return {
                "at": at.isoformat(),
                "source": "stored",
                "computed_at": stored["computed_at"].isoformat(),
                "summary": summary.get("clubs", []),
                "already_settled": summary.get("already_settled", {}),
                "comparison": stored["comparison"],
                "details": [line.row() for line in page],
                "next_after": page[-1].subscription_id
                if len({line.subscription_id for line in page}) == limit
                else None,
            }
    computed = compute(uow, reader, at, pending_timeout, retry_window, True, messages=False)
    wanted = [
        line
        for line in computed.lines
        if (club_id is None or line.club_id == club_id)
        and (after is None or line.subscription_id > after)
    ]
    # A page is `limit` subscriptions, each with all its lines (periods).
    ids = sorted({line.subscription_id for line in wanted})[:limit]
    chosen = [line for line in wanted if ids and line.subscription_id <= ids[-1]]
    return {
        "at": at.isoformat(),
        "source": "computed",
        "computed_at": None,
        "summary": computed.summary,
        "already_settled": computed.settled,
        "comparison": None,
        "details": [line.row() for line in chosen],
        "next_after": ids[-1] if len(ids) == limit else None,
    }


def prepare(
    uow: UnitOfWork,
    reader: UnitOfWork,
    now: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta = billing.DEFAULT_RETRY_WINDOW,
) -> Forecast:
    """Store the forecast of the next daily run (the endpoint then reads it)."""
    upcoming = compute(
        uow, reader, next_run(now), pending_timeout, retry_window, True, messages=False
    )
    store(uow, upcoming, now)
    return upcoming
