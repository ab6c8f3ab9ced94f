"""Months of billing in minutes: a sandbox copy of a database, stepped day by day.

Each simulated day, with the clock (common/clock.py) set: the scenario's events of the
day at 05:00 (pauses, card reports, club status changes), the webhooks due that day at
05:30 (through `domain.webhooks.receive`, late or twice as scripted), then at 06:00 the
daily run exactly as `make billing-run` does it: its forecast stored, `billing.plan`,
`billing.settle` for each message against the fake platform (fake_ecommerce, called
in-process: its order logic without the socket), and the forecast compared with what
the run audited. Nothing jumps over a day.

The sandbox is a database created by `copy` (CREATE DATABASE ... TEMPLATE, or pg_dump
when the source is in use) and marked with a COMMENT; `simulate` refuses any database
without that mark, so it never writes to a real one.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from email.message import Message
from pathlib import Path
from typing import Any, TextIO

import orjson
from sqlalchemy import text

from common import clock
from domain import billing, errors, forecast, subscriptions, webhooks
from domain.model import ClubStatus, SubscriptionStatus
from domain.ports import PlatformAnswer
from domain.webhooks import EventType, PlatformEvent
from fake_ecommerce import server as fake
from ops.sandbox import NotASandbox, copy, drop, is_sandbox, require_sandbox
from ops.scenario import Scenario
from repositories.unit_of_work import SqlAlchemyUnitOfWork

__all__ = ["NotASandbox", "Scenario", "copy", "drop", "is_sandbox", "require_sandbox", "simulate"]

EVENTS_AT = time(5, 0)
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


@dataclass
class Month:
    charged: int = 0
    refused: int = 0
    platform_errors: int = 0
    retried: int = 0
    cancelled: int = 0
    webhooks: int = 0
    duplicate_webhooks: int = 0
    forecast_runs: int = 0
    forecast_agreed: int = 0
    units_per_sku: Counter[str] = field(default_factory=Counter)
    double_charges: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["units_per_sku"] = dict(sorted(self.units_per_sku.items()))
        return data


@dataclass
class Report:
    start: date
    days: int
    months: dict[str, Month]
    seconds: float = 0.0

    @property
    def double_charges(self) -> int:
        return sum(month.double_charges for month in self.months.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "days": self.days,
            "seconds": round(self.seconds, 1),
            "double_charges": self.double_charges,
            "months": {key: month.to_dict() for key, month in self.months.items()},
        }


def _add_months(day: date, months: int) -> date:
    import calendar

    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def populate(scenario: Scenario, at: datetime) -> None:
    """Clubs and subscriptions the scenario asks for, created as of `at`."""
    if not scenario.clubs and not scenario.subscriptions:
        return
    with SqlAlchemyUnitOfWork() as uow:
        conn = uow.connection
        club_ids = []
        for n in range(max(scenario.clubs, 1)):
            club_id = conn.scalar(
                text("INSERT INTO club (name, store_sku) VALUES (:n, :sku) RETURNING id"),
                {"n": f"Simulated club {n + 1}", "sku": 9000 + n},
            )
            conn.execute(
                text(
                    "INSERT INTO club_status_history"
                    " (id, club_id, club_status_id, effect_date, create_date, details)"
                    " VALUES (:id, :club, 1, :at, :at, 'opened by the simulation')"
                ),
                {"id": str(uuid.uuid4()), "club": club_id, "at": at - timedelta(days=30)},
            )
            club_ids.append(club_id)
        # Members as plain SQL writes them (the data model's own way), a statement each.
        conn.execute(
            text(
                "INSERT INTO subscription (id, club_id, customer_store_id, create_date)"
                " SELECT 'sim-' || lpad(n::text, 7, '0'), (:clubs)[1 + n % cardinality(:clubs)],"
                " 'sim-customer-' || lpad(n::text, 7, '0'),"
                " CAST(:at AS timestamp) - make_interval(days => 1 + n % 20)"
                " FROM generate_series(0, :count - 1) n"
            ),
            {"clubs": club_ids, "at": at, "count": scenario.subscriptions},
        )
        conn.execute(
            text(
                "INSERT INTO subscription_status_history"
                " (id, subscription_id, status_id, effect_date, create_date, details)"
                " SELECT gen_random_uuid()::text, id, 1, create_date, create_date,"
                " 'Subscription created' FROM subscription WHERE id LIKE 'sim-%'"
            )
        )
        uow.commit()
    with SqlAlchemyUnitOfWork() as uow:
        uow.connection.execute(text("SELECT subscription_current_status_absorb()"))
        uow.commit()


def _candidates(at: datetime, count: int, rng: random.Random) -> list[tuple[str, str]]:
    ids = subscriptions.eligible_ids(SqlAlchemyUnitOfWork(), at)
    chosen = rng.sample(ids, min(count, len(ids)))
    with SqlAlchemyUnitOfWork() as uow:
        rows = uow.connection.execute(
            text("SELECT id, customer_store_id FROM subscription WHERE id = ANY(:ids)"),
            {"ids": chosen},
        )
        return sorted((row.id, row.customer_store_id) for row in rows)


def _events(scenario: Scenario, day: date, rng: random.Random, platform: SimulatedPlatform):
    at = datetime.combine(day, EVENTS_AT)
    for pause in (p for p in scenario.pauses if p["day"] == day):
        for subscription_id, _ in _candidates(at, int(pause.get("count", 1)), rng):
            subscriptions.change_status(
                SqlAlchemyUnitOfWork(),
                subscription_id,
                SubscriptionStatus.PAUSED,
                at,
                interval_days=int(pause.get("days", 30)),
                details="paused by the simulation",
            )
    for report in (r for r in scenario.card_reports if r["day"] == day):
        for _, customer in _candidates(at, int(report.get("count", 1)), rng):
            event = PlatformEvent(
                f"evt_card_{uuid.UUID(int=rng.getrandbits(128)).hex}",
                EventType.CARD_UNAVAILABLE,
                customer_id=customer,
                reason=report.get("reason", "expired"),
                occurred_at=at,
            )
            platform.outbox.append(Delivery(at, event))
    for change in (c for c in scenario.club_changes if c["day"] == day):
        from domain import operations

        operations.change_club_status(
            SqlAlchemyUnitOfWork(),
            int(change["club_id"]),
            ClubStatus[str(change["status"]).upper()],
            "simulation",
            at,
        )


def _absorb() -> None:
    """Bring the status cache up to date, as the eligible endpoint does before a page."""
    with SqlAlchemyUnitOfWork() as uow:
        uow.connection.execute(text("SELECT subscription_current_status_absorb()"))
        uow.commit()


def _run(
    run_at: datetime, platform: SimulatedPlatform, month: Month, config, pool: ThreadPoolExecutor
) -> None:
    """The daily run as `make billing-run` does it: its forecast first (the same plan),
    `settle` for each planned message, then the forecast compared with the audit."""
    pending_timeout, retry_window = config
    planned = forecast.compute(
        SqlAlchemyUnitOfWork(), SqlAlchemyUnitOfWork(), run_at, pending_timeout, retry_window
    )
    forecast.store(SqlAlchemyUnitOfWork(), planned, run_at)

    def settle(message: billing.BillingMessage) -> billing.Outcome | None:
        try:
            return billing.settle(
                SqlAlchemyUnitOfWork(),
                platform,
                message.subscription_id,
                clock.now,
                pending_timeout,
                retry_window,
                period=message.period,
                step=message.step,
            )
        except (errors.PlatformError, errors.ChargeInProgress):
            return None

    # Several workers at once, as the queue's consumers are (reservedConcurrency 10).
    for outcome in pool.map(settle, planned.messages):
        if outcome is None:
            month.platform_errors += 1
        elif outcome == billing.Outcome.CHARGED:
            month.charged += 1
        elif outcome == billing.Outcome.FAILED:
            month.refused += 1
        elif outcome == billing.Outcome.CANCELLED:
            month.cancelled += 1
    comparison = forecast.compare(
        SqlAlchemyUnitOfWork(), run_at, run_at + timedelta(days=1), run_at
    )
    month.forecast_runs += 1
    month.forecast_agreed += int(bool(comparison.get("agreed")))


def _tally(start: datetime, end: datetime, months: dict[str, Month], paid: dict) -> None:
    """Retries, units per SKU and double charges, from the ledger and the platform."""
    with SqlAlchemyUnitOfWork() as uow:
        conn = uow.connection
        retries = conn.execute(
            text(
                "SELECT to_char(started_at, 'YYYY-MM') AS month, count(*) FROM charge_attempt"
                " WHERE attempt > 1 AND started_at >= :s AND started_at < :e GROUP BY 1"
            ),
            {"s": start, "e": end},
        )
        for row in retries:
            if row.month in months:
                months[row.month].retried = row.count
        units = conn.execute(
            text(
                "SELECT to_char(coalesce(billing_date, created_at), 'YYYY-MM') AS month,"
                " coalesce(store_sku::text, 'none') AS sku, count(*) FROM charge"
                " WHERE state = 'succeeded' AND created_at >= :s AND created_at < :e"
                " GROUP BY 1, 2"
            ),
            {"s": start, "e": end},
        )
        for row in units:
            if row.month in months:
                months[row.month].units_per_sku[row.sku] = row.count
        attempts = conn.execute(
            text(
                "SELECT a.request_id, c.subscription_id, c.period,"
                " to_char(a.started_at, 'YYYY-MM') AS month"
                " FROM charge_attempt a JOIN charge c ON c.id = a.charge_id"
                " WHERE a.started_at >= :s AND a.started_at < :e"
            ),
            {"s": start, "e": end},
        )
        paid_orders: dict[tuple[str, str], set[str]] = defaultdict(set)
        month_of: dict[tuple[str, str], str] = {}
        for row in attempts:
            if paid.get(row.request_id):
                paid_orders[(row.subscription_id, row.period)].add(row.request_id)
                month_of.setdefault((row.subscription_id, row.period), row.month)
        for key, orders in paid_orders.items():
            if len(orders) > 1 and month_of[key] in months:
                months[month_of[key]].double_charges += 1
        webhook_rows = conn.execute(
            text(
                "SELECT to_char(received_at, 'YYYY-MM') AS month, count(*) FROM webhook_event"
                " WHERE received_at >= :s AND received_at < :e GROUP BY 1"
            ),
            {"s": start, "e": end},
        )
        for row in webhook_rows:
            if row.month in months:
                months[row.month].webhooks = row.count


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
    rng = random.Random(scenario.seed)  # noqa: S311 (a reproducible scenario, not a secret)
    platform = SimulatedPlatform(scenario, rng)
    end = _add_months(start, months)
    days = (end - start).days
    report = Report(start, days, {})
    current = {"now": datetime.combine(start, EVENTS_AT)}
    clock.set_source(lambda: current["now"])
    progress = _Progress(days, out)
    try:
        populate(scenario, datetime.combine(start, EVENTS_AT) - timedelta(days=1))
        began = timer.monotonic()
        for offset in range(days):
            day = start + timedelta(days=offset)
            month = report.months.setdefault(f"{day:%Y-%m}", Month())
            platform.today = day
            current["now"] = datetime.combine(day, EVENTS_AT)
            _events(scenario, day, rng, platform)
            current["now"] = datetime.combine(day, WEBHOOKS_AT)
            at = current["now"]
            receipts = pool.map(
                lambda event, at=at: webhooks.receive(SqlAlchemyUnitOfWork(), event, at),
                platform.due(at),
            )
            month.duplicate_webhooks += sum(r == webhooks.Receipt.DUPLICATE for r in receipts)
            current["now"] = datetime.combine(day, forecast.RUN_TIME)
            _absorb()
            _run(current["now"], platform, month, (pending_timeout, retry_window), pool)
            progress.step(day, report)
            if on_day:
                on_day(day)
        report.seconds = timer.monotonic() - began
        _tally(
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


class _Progress:
    def __init__(self, total: int, out: TextIO | None, width: int = 30) -> None:
        self.total, self.out, self.width, self.done = total, out, width, 0

    def step(self, day: date, report: Report) -> None:
        self.done += 1
        if self.out is None:
            return
        filled = self.width * self.done // max(self.total, 1)
        charged = sum(m.charged for m in report.months.values())
        cancelled = sum(m.cancelled for m in report.months.values())
        self.out.write(
            f"\r[{'#' * filled}{'-' * (self.width - filled)}] {day} day {self.done}/{self.total}"
            f" charged {charged} cancelled {cancelled}"
        )
        self.out.flush()

    def close(self) -> None:
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()


def plot(report: Report, path: Path) -> Path:
    """Charged, retried and cancelled per month (needs matplotlib: requirements-bench.txt)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(report.months)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.25
    for n, (name, label) in enumerate(
        (("charged", "charged"), ("retried", "retried"), ("cancelled", "cancelled"))
    ):
        values = [getattr(report.months[key], name) for key in keys]
        ax.bar([i + (n - 1) * width for i in range(len(keys))], values, width, label=label)
    ax.set_xticks(range(len(keys)), keys)
    ax.set_title(f"Simulated billing from {report.start} ({report.days} days)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
