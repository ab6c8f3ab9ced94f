"""The stored forecasts: every run stores the forecast of itself before it acts and
compares it with what it audited afterwards; the forecast schedule stores the next run's
ahead, and the endpoint serves a stored one a page at a time (docs/operators-desk.md).
The forecast itself is domain/forecast.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from domain import billing, cancellation_breaker
from domain.billing import Step
from domain.forecast import Forecast, compute, next_run
from domain.forecast_model import CANCEL, HELD, RETRY, Line
from domain.ports import UnitOfWork


def store(uow: UnitOfWork, forecast: Forecast, computed_at: datetime) -> None:
    with uow:
        summary = {
            "clubs": forecast.summary,
            "already_settled": forecast.settled,
            "breaker": forecast.breaker,
        }
        uow.forecasts.store(forecast.at, computed_at, summary, forecast.lines)
        uow.commit()


def acted(lines_: Iterable[Line]) -> set[tuple[str, str, str]]:
    """The (subscription, period, action) a forecast says the run writes: charges,
    retries, cancellations, and cancellations held by the breaker (audited as held)."""
    keys = set()
    for line in lines_:
        if line.action.startswith(HELD):
            keys.add((line.subscription_id, line.period, "held"))
        elif line.action.startswith(CANCEL):
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
        expected = acted(uow.forecasts.lines(run_at))
        actual = set()
        for subscription_id, period, action, attempt in uow.forecasts.actual(run_at, until):
            if action == "cancellation":
                actual.add((subscription_id, period, "cancel"))
            elif action == "cancellation_held":
                actual.add((subscription_id, period, "held"))
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


def before_run(
    uow: UnitOfWork,
    reader: UnitOfWork,
    run_at: datetime,
    now: datetime,
    pending_timeout: timedelta,
    retry_window: timedelta = billing.DEFAULT_RETRY_WINDOW,
    breaker: cancellation_breaker.Breaker | None = None,
) -> bool:
    """Store the forecast of the run at `run_at` unless one was stored for it before;
    True when it was computed now."""
    with uow:
        if uow.forecasts.stored(run_at) is not None:
            return False
    planned = compute(uow, reader, run_at, pending_timeout, retry_window, breaker=breaker)
    store(uow, planned, now)
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
    breaker: cancellation_breaker.Breaker | None = None,
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
                "breaker": summary.get("breaker"),
                "comparison": stored["comparison"],
                "details": [line.row() for line in page],
                "next_after": page[-1].subscription_id
                if len({line.subscription_id for line in page}) == limit
                else None,
            }
    computed = compute(uow, reader, at, pending_timeout, retry_window, True, breaker)
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
        "breaker": computed.breaker,
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
    breaker: cancellation_breaker.Breaker | None = None,
) -> Forecast:
    """Store the forecast of the next daily run (the endpoint then reads it)."""
    upcoming = compute(uow, reader, next_run(now), pending_timeout, retry_window, True, breaker)
    store(uow, upcoming, now)
    return upcoming
