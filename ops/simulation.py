"""Months of billing in minutes: a sandbox copy of a database, stepped day by day.

Each simulated day, with the clock (common/clock.py) set: the scenario's events of the
day at 05:00 (ops/events.py: pauses, card reports, clubs opened or closed, members
changing club, held cancellations released), the webhooks due that day at 05:30 (through
`domain.webhooks.receive`, late or twice as scripted), then at 06:00 the daily run
exactly as `make billing-run` runs it, the same function (`domain.daily_run.run`): the
club-change sweep, its forecast stored, the producer with the deployment's cancellation
breaker, `settlement.settle` for each message against the fake platform (fake_ecommerce,
called in-process: its order logic without the socket), and the forecast compared with
what the run audited. Nothing jumps over a day. The report is ops/simulation_report.py.

The sandbox is a database created by `copy` (CREATE DATABASE ... TEMPLATE, or pg_dump
when the source is in use) and marked with a COMMENT; `simulate` refuses any database
without that mark, so it never writes to a real one.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.message import Message
from typing import TextIO

import orjson
from sqlalchemy import text

from common import clock
from domain import billing, cancellation_breaker, daily_run, forecast, webhooks
from domain.ports import PlatformAnswer
from domain.webhooks import EventType, PlatformEvent
from fake_ecommerce import server as fake
from ops import events
from ops.events import EVENTS_AT
from ops.sandbox import NotASandbox, copy, drop, is_sandbox, require_sandbox
from ops.scenario import Scenario
from ops.simulation_report import Month, Progress, Report, plot, tally
from repositories.unit_of_work import SqlAlchemyUnitOfWork

__all__ = [
    "NotASandbox",
    "Report",
    "Scenario",
    "copy",
    "drop",
    "is_sandbox",
    "plot",
    "require_sandbox",
    "simulate",
]

WEBHOOKS_AT = time(5, 30)
WORKERS = 8


# --- the platform, in-process --------------------------------------------------------------


@dataclass
class Delivery:
    due: datetime
    event: PlatformEvent


class SimulatedPlatform:
    """The fake platform's order logic, called in-process, with the scenario's faults;
    each accepted order's payment-outcome is queued as a webhook for a later step."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng
        self.fake = fake.FakePlatform(port=0)
        self.outbox: list[Delivery] = []
        # request id -> whether its payment succeeded (decided once per order).
        self.paid: dict[str, bool] = {}
        self.today: date | None = None
        self.lock = threading.Lock()

    def close(self) -> None:
        self.fake.stop()

    def ready(self) -> None:
        """Nothing to resolve: the simulated platform has no secret (domain.ports.Ecommerce)."""

    def _headers(self, mode: str | None) -> Message:
        headers = Message()
        headers["x-api-key"] = fake.DEFAULT_API_KEY
        headers["x-api-secret"] = fake.DEFAULT_API_SECRET
        if mode:
            headers["x-fake-mode"] = mode
        return headers

    def place_order(self, request_id: str, customer_id: str, sku_id: int) -> PlatformAnswer:
        # Drawn from the request id and the day, not a shared sequence: the same scenario
        # gives the same answers whatever order the workers call in.
        rng = random.Random(f"{self.scenario.seed}:{self.today}:{request_id}")  # noqa: S311
        mode = None
        if self.today in self.scenario.outage_days:
            mode = "fail"
        elif rng.random() < self.scenario.decline_rate:
            mode = "reject"
        body = orjson.dumps({"customer_id": customer_id, "sku_id": sku_id})
        outcome = self.fake.handle_order(request_id, self._headers(mode), body)
        text_body = (outcome.body or b"").decode()
        if outcome.status == 201:
            self._payment_outcome(request_id, rng)
        try:
            return PlatformAnswer(outcome.status, text_body, orjson.loads(text_body), True)
        except orjson.JSONDecodeError:
            return PlatformAnswer(outcome.status, text_body)

    def _payment_outcome(self, request_id: str, rng: random.Random) -> None:
        success = rng.random() >= self.scenario.payment_failure_rate
        now = clock.now()
        due = now
        if rng.random() < self.scenario.late_webhook_rate:
            due = now + timedelta(days=self.scenario.late_webhook_days)
        event = PlatformEvent(
            f"evt_{uuid.UUID(int=rng.getrandbits(128)).hex}",
            EventType.PAYMENT_OUTCOME,
            request_id=request_id,
            outcome="success" if success else "failure",
            reason=None if success else "insufficient_funds",
            occurred_at=now,
        )
        duplicate = rng.random() < self.scenario.duplicate_webhook_rate
        with self.lock:
            self.paid[request_id] = success
            self.outbox.append(Delivery(due, event))
            if duplicate:
                self.outbox.append(Delivery(due + timedelta(hours=1), event))

    def due(self, until: datetime) -> list[PlatformEvent]:
        ready = [d for d in self.outbox if d.due <= until]
        self.outbox = [d for d in self.outbox if d.due > until]
        return [d.event for d in sorted(ready, key=lambda d: d.due)]


# --- the days ------------------------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    import calendar

    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _absorb() -> None:
    """Bring the status cache up to date, as the eligible endpoint does before a page."""
    with SqlAlchemyUnitOfWork() as uow:
        uow.connection.execute(text("SELECT subscription_current_status_absorb()"))
        uow.commit()


def _run(
    run_at: datetime, platform: SimulatedPlatform, month: Month, config, pool: ThreadPoolExecutor
) -> None:
    """The daily run exactly as `make billing-run` runs it (`domain.daily_run.run`: the
    club-change sweep, its forecast, the producer with its breaker, `settle` for each
    message, the comparison), several messages settled at once as the queue's workers do."""
    pending_timeout, retry_window, breaker = config

    def settled(message: billing.BillingMessage, outcome: billing.Outcome | None) -> None:
        if outcome is None:
            month.platform_errors += 1
        elif outcome == billing.Outcome.CHARGED:
            month.charged += 1
        elif outcome == billing.Outcome.FAILED:
            month.refused += 1
        elif outcome == billing.Outcome.CANCELLED:
            month.cancelled += 1

    done = daily_run.run(
        SqlAlchemyUnitOfWork,
        platform,
        clock.now,
        breaker,
        pending_timeout,
        retry_window,
        settle_all=pool.map,
        on_settled=settled,
    )
    month.held.update((m.subscription_id, m.period) for m in done.summary.held)
    month.club_changes += len(done.sweep.applied)
    month.forecast_runs += 1
    month.forecast_agreed += int(bool(done.comparison.get("agreed")))


def simulate(
    url: str,
    start: date,
    months: int,
    scenario: Scenario,
    pending_timeout: timedelta,
    retry_window: timedelta,
    out: TextIO | None = None,
    on_day: Callable[[date], None] | None = None,
) -> Report:
    """Step the sandbox at `url` through `months` months from `start`, day by day."""
    import os
    import time as timer

    from common import settings
    from repositories import database

    require_sandbox(url)
    previous = {name: os.environ.get(name) for name in ("DATABASE_URL", "DB_POOL_SIZE")}
    os.environ["DATABASE_URL"] = url
    os.environ["DB_POOL_SIZE"] = str(WORKERS + 2)
    pool = ThreadPoolExecutor(WORKERS)
    settings.get.cache_clear()
    database.reset()
    windows = (pending_timeout, retry_window)
    # The deployment's breaker, as the run reads it (BILLING_MAX_CANCELLATIONS...).
    breaker = cancellation_breaker.Breaker.configured(settings.get())
    rng = random.Random(scenario.seed)  # noqa: S311 (a reproducible scenario, not a secret)
    platform = SimulatedPlatform(scenario, rng)
    end = _add_months(start, months)
    days = (end - start).days
    report = Report(start, days, {})
    current = {"now": datetime.combine(start, EVENTS_AT)}
    clock.set_source(lambda: current["now"])
    progress = Progress(days, out)
    try:
        events.populate(scenario, datetime.combine(start, EVENTS_AT) - timedelta(days=1))
        began = timer.monotonic()
        for offset in range(days):
            day = start + timedelta(days=offset)
            month = report.months.setdefault(f"{day:%Y-%m}", Month())
            platform.today = day
            current["now"] = datetime.combine(day, EVENTS_AT)
            happened = events.happen(scenario, day, rng, platform, windows)
            platform.outbox += [
                Delivery(event.occurred_at, event) for event in happened.card_reports
            ]
            month.club_changes += happened.club_changes_applied
            month.cancelled += happened.released
            current["now"] = datetime.combine(day, WEBHOOKS_AT)
            at = current["now"]
            receipts = pool.map(
                lambda event, at=at: webhooks.receive(SqlAlchemyUnitOfWork(), event, at),
                platform.due(at),
            )
            month.duplicate_webhooks += sum(r == webhooks.Receipt.DUPLICATE for r in receipts)
            current["now"] = datetime.combine(day, forecast.RUN_TIME)
            _absorb()
            _run(current["now"], platform, month, (*windows, breaker), pool)
            progress.step(day, report)
            if on_day:
                on_day(day)
        report.seconds = timer.monotonic() - began
        tally(
            datetime.combine(start, time.min),
            datetime.combine(end, time.min),
            report.months,
            platform.paid,
        )
    finally:
        progress.close()
        clock.set_source(None)
        platform.close()
        database.reset()
        pool.shutdown()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        settings.get.cache_clear()
    return report
