"""What a simulation reports: per month charged, retried, refused, cancelled, held,
club changes, webhooks, forecast agreement, units per SKU and double charges (which
must be zero); as a table (ops/money_commands.py), JSON and a plot; and its progress bar."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import text

from repositories.unit_of_work import SqlAlchemyUnitOfWork


@dataclass
class Month:
    charged: int = 0
    refused: int = 0
    platform_errors: int = 0
    retried: int = 0
    cancelled: int = 0
    # Cancellations the run's breaker held (each subscription and period once a month).
    held: set[tuple[str, str]] = field(default_factory=set)
    # Members' club changes that took effect (recorded by the run, or "now" at once).
    club_changes: int = 0
    webhooks: int = 0
    duplicate_webhooks: int = 0
    forecast_runs: int = 0
    forecast_agreed: int = 0
    units_per_sku: Counter[str] = field(default_factory=Counter)
    double_charges: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["held"] = len(self.held)
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


def tally(start: datetime, end: datetime, months: dict[str, Month], paid: dict) -> None:
    """Retries, units per SKU and double charges, from the ledger and the platform."""
    window = {"s": start, "e": end}
    with SqlAlchemyUnitOfWork() as uow:
        conn = uow.connection

        def per_month(sql: str):
            """(the report's month, the row) for each row of a month the report holds."""
            for row in conn.execute(text(sql), window):
                if row.month in months:
                    yield months[row.month], row

        for month, row in per_month(
            "SELECT to_char(started_at, 'YYYY-MM') AS month, count(*) FROM charge_attempt"
            " WHERE attempt > 1 AND started_at >= :s AND started_at < :e GROUP BY 1"
        ):
            month.retried = row.count
        for month, row in per_month(
            "SELECT to_char(coalesce(billing_date, created_at), 'YYYY-MM') AS month,"
            " coalesce(store_sku::text, 'none') AS sku, count(*) FROM charge"
            " WHERE state = 'succeeded' AND created_at >= :s AND created_at < :e"
            " GROUP BY 1, 2"
        ):
            month.units_per_sku[row.sku] = row.count
        attempts = conn.execute(
            text(
                "SELECT a.request_id, c.subscription_id, c.period,"
                " to_char(a.started_at, 'YYYY-MM') AS month"
                " FROM charge_attempt a JOIN charge c ON c.id = a.charge_id"
                " WHERE a.started_at >= :s AND a.started_at < :e"
            ),
            window,
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
        for month, row in per_month(
            "SELECT to_char(received_at, 'YYYY-MM') AS month, count(*) FROM webhook_event"
            " WHERE received_at >= :s AND received_at < :e GROUP BY 1"
        ):
            month.webhooks = row.count


class Progress:
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
    """Charged, retried, cancelled, held by the breaker and club changes per month (needs
    matplotlib: requirements-bench.txt)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(report.months)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bars = (
        ("charged", "charged"),
        ("retried", "retried"),
        ("cancelled", "cancelled"),
        ("held", "held by the breaker"),
        ("club_changes", "club changes"),
    )
    width = 0.8 / len(bars)
    for n, (name, label) in enumerate(bars):
        values = [report.months[key].to_dict()[name] for key in keys]
        offset = (n - (len(bars) - 1) / 2) * width
        ax.bar([i + offset for i in range(len(keys))], values, width, label=label)
    ax.set_xticks(range(len(keys)), keys)
    ax.set_title(f"Simulated billing from {report.start} ({report.days} days)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(bars), fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
