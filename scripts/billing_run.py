"""`make billing-run`: the billing run, locally, against the local database and platform.

    python -m scripts.billing_run

The same producer as the scheduled Lambda (`domain.billing.plan`) and the same worker
(`domain.billing.settle`), but each subscription is settled in-process instead of through
SQS. The platform is ECOMM_BASE_URL when set; otherwise the fake platform of `make run`
on :4010 if it answers, else a fake platform started for this run. A progress bar is
drawn when stdout is a terminal; the summary is always printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import TextIO

import requests

from common import clock, settings
from domain import audit, billing, club_changes, errors, forecast
from fake_ecommerce import server as fake
from handlers.charge import platform
from repositories.unit_of_work import SqlAlchemyUnitOfWork

LOCAL_PLATFORM = "http://127.0.0.1:4010"
ORDER = (
    "charged",
    "already charged",
    "failed",
    "platform error",
    "skipped",
    "cancelled",
    "abandoned",
    "held",
)


@contextlib.contextmanager
def local_platform() -> Iterator[str]:
    """Point the run at a fake platform unless ECOMM_BASE_URL names one."""
    if os.environ.get("ECOMM_BASE_URL"):
        yield os.environ["ECOMM_BASE_URL"]
        return
    os.environ.setdefault("ECOMM_API_KEY", fake.DEFAULT_API_KEY)
    os.environ.setdefault("ECOMM_API_SECRET", fake.DEFAULT_API_SECRET)
    try:
        requests.get(f"{LOCAL_PLATFORM}/health", timeout=1).raise_for_status()
        os.environ["ECOMM_BASE_URL"] = LOCAL_PLATFORM
        yield LOCAL_PLATFORM
        return
    except requests.RequestException:
        pass
    with fake.start(
        api_key=os.environ["ECOMM_API_KEY"],
        api_secret=os.environ["ECOMM_API_SECRET"],
        log_stream=open(os.devnull, "w"),
    ) as running:
        os.environ["ECOMM_BASE_URL"] = running.base_url
        yield running.base_url


class Progress:
    """A one-line progress bar, drawn only on a terminal."""

    def __init__(self, total: int, out: TextIO, width: int = 30) -> None:
        self.total, self.out, self.width = total, out, width
        self.enabled = out.isatty()
        self.done = 0

    def step(self, counts: Counter[str]) -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        self.out.write(
            f"\r[{bar}] {self.done}/{self.total} charged {counts['charged']}"
            f" failed {counts['failed']}"
        )
        self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self.out.write("\n")


def run(out: TextIO = sys.stdout) -> Counter[str]:
    config = settings.get()
    pending_timeout = timedelta(seconds=config.charge_pending_timeout_seconds)
    retry_window = timedelta(days=config.billing_retry_days)
    now = clock.now()
    counts: Counter[str] = Counter({name: 0 for name in ORDER})
    # Club-change hook: record changes whose instant passed, cancel interfered ones.
    club_changes.sweep(SqlAlchemyUnitOfWork(), now, audit.BILLING_RUN)
    # The run's own forecast first (after the sweep: what the run will plan), compared
    # with what it did at the end.
    forecast.before_run(
        SqlAlchemyUnitOfWork(), SqlAlchemyUnitOfWork(), now, now, pending_timeout, retry_window
    )
    progress = Progress(billing.eligible_count(SqlAlchemyUnitOfWork(), now), out)
    summary = billing.RunSummary()
    breaker = billing.Breaker(
        config.billing_max_cancellations, config.billing_max_cancellations_floor
    )
    seen: set[str] = set()
    produced = billing.produce(
        SqlAlchemyUnitOfWork(), now, breaker, summary, retry_window, pending_timeout
    )
    for message in produced:
        try:
            outcome = billing.settle(
                SqlAlchemyUnitOfWork(),
                platform(),
                message.subscription_id,
                clock.now,
                pending_timeout,
                retry_window,
                period=message.period,
                step=message.step,
            )
            counts[outcome.value] += 1
        except (errors.PlatformError, errors.ChargeInProgress):
            counts["failed"] += 1
        if message.subscription_id not in seen:
            seen.add(message.subscription_id)
            progress.step(counts)
    counts["already charged"] += summary.counts["succeeded"]
    counts["skipped"] += summary.counts["abandoned"] + summary.counts["in flight"]
    counts["held"] += len(summary.held)
    if summary.held:
        print(
            f"the cancellation breaker held {len(summary.held)} cancellation(s) "
            f"(limit {summary.limit} of {summary.due} due): review them, then "
            "`make release-cancellations`",
            file=sys.stderr,
        )
    progress.close()
    comparison = forecast.compare(SqlAlchemyUnitOfWork(), now, now + timedelta(days=1), clock.now())
    counts["forecast agreed"] = int(bool(comparison.get("agreed")))
    return counts


def main() -> int:
    with local_platform() as base_url:
        settings.get.cache_clear()
        platform.cache_clear()
        print(f"billing run against {base_url}", file=sys.stderr)
        counts = run()
    print("summary: " + ", ".join(f"{name} {counts[name]}" for name in ORDER))
    print("forecast: " + ("agreed with the run" if counts["forecast agreed"] else "DIFFERED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
