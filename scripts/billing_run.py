"""`make billing-run`: the billing run, locally, against the local database and platform.

    python -m scripts.billing_run

The same producer as the scheduled Lambda (`domain.cancellation_breaker.produce`, with its breaker)
and the same worker (`domain.settlement.settle`), but each subscription is settled
in-process instead of through SQS (`domain.daily_run.run`, which the simulation runs
too). The platform, in this order:

1. ECOMM_BASE_URL when set, with ECOMM_API_KEY and ECOMM_API_SECRET (or
   ECOMM_API_SECRET_ID); when one is missing the run stops before writing anything;
2. the fake platform of a running `make run`, on whatever port it was started: the server
   records it in `.run/local-server.env` (RUN_DIR), with its local credentials;
3. a fake on FAKE_ECOMM_PORT (default 4010) if one answers there;
4. else a fake platform started for this run only (its orders are lost when it ends).

A progress bar is drawn when stdout is a terminal; the summary is always printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import requests

from adapters import secrets
from common import clock, settings
from domain import billing, cancellation_breaker, daily_run, errors
from fake_ecommerce import server as fake
from handlers.charge import platform
from repositories.unit_of_work import SqlAlchemyUnitOfWork

ROOT = Path(__file__).resolve().parent.parent
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


class NotConfigured(SystemExit):
    """The platform is half-configured: nothing may be written."""


def state_file() -> Path:
    return Path(os.environ.get("RUN_DIR") or ROOT / ".run") / "local-server.env"


def running_server() -> dict[str, str]:
    """What a running `make run` recorded about its fake platform, or {}."""
    try:
        lines = state_file().read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _answers(base_url: str) -> bool:
    try:
        requests.get(f"{base_url}/health", timeout=1).raise_for_status()
    except requests.RequestException:
        return False
    return True


def check_configured() -> None:
    """Stop, with one line, unless the configured platform can be called."""
    missing = [name for name in ("ECOMM_API_KEY",) if not os.environ.get(name)]
    if not (os.environ.get("ECOMM_API_SECRET") or os.environ.get("ECOMM_API_SECRET_ID")):
        missing.append("ECOMM_API_SECRET (or ECOMM_API_SECRET_ID)")
    if missing:
        verb, them = ("is", "it") if len(missing) == 1 else ("are", "them")
        raise NotConfigured(
            f"billing run not started: ECOMM_BASE_URL is set but {' and '.join(missing)}"
            f" {verb} not; set {them}, or unset ECOMM_BASE_URL to use the local fake platform."
            " Nothing was written."
        )
    settings.get.cache_clear()
    try:
        secrets.ecomm_api_secret(settings.get())
    except errors.PlatformNotConfigured as exc:
        raise NotConfigured(
            f"billing run not started: {exc.message}. Nothing was written."
        ) from None


@contextlib.contextmanager
def local_platform(log: TextIO | None = None) -> Iterator[str]:
    """Point the run at the configured platform, or at a fake one (see the module's doc)."""
    if os.environ.get("ECOMM_BASE_URL"):
        check_configured()
        yield os.environ["ECOMM_BASE_URL"]
        return
    server = running_server()
    if server.get("FAKE_ECOMM_URL") and _answers(server["FAKE_ECOMM_URL"]):
        os.environ["ECOMM_API_KEY"] = server.get("ECOMM_API_KEY", fake.DEFAULT_API_KEY)
        os.environ["ECOMM_API_SECRET"] = server.get("ECOMM_API_SECRET", fake.DEFAULT_API_SECRET)
        os.environ["ECOMM_BASE_URL"] = server["FAKE_ECOMM_URL"]
        yield server["FAKE_ECOMM_URL"]
        return
    os.environ.setdefault("ECOMM_API_KEY", fake.DEFAULT_API_KEY)
    os.environ.setdefault("ECOMM_API_SECRET", fake.DEFAULT_API_SECRET)
    default = f"http://127.0.0.1:{os.environ.get('FAKE_ECOMM_PORT') or 4010}"
    if _answers(default):
        os.environ["ECOMM_BASE_URL"] = default
        yield default
        return
    with fake.start(
        api_key=os.environ["ECOMM_API_KEY"],
        api_secret=os.environ["ECOMM_API_SECRET"],
        log_stream=open(os.devnull, "w"),
    ) as running:
        print(
            "no running `make run` found: charging through a temporary fake platform"
            " (its orders are not kept)",
            file=log or sys.stderr,
        )
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
    """The run now (domain/daily_run.py: sweep, forecast, producer with its breaker,
    worker, comparison), each message settled in-process as it is produced."""
    config = settings.get()
    counts: Counter[str] = Counter({name: 0 for name in ORDER})
    progress = Progress(billing.eligible_count(SqlAlchemyUnitOfWork(), clock.now()), out)
    seen: set[str] = set()

    def settled(message: billing.BillingMessage, outcome: billing.Outcome | None) -> None:
        counts[outcome.value if outcome is not None else "failed"] += 1
        if message.subscription_id not in seen:
            seen.add(message.subscription_id)
            progress.step(counts)

    done = daily_run.run(
        SqlAlchemyUnitOfWork,
        platform(),
        clock.now,
        cancellation_breaker.Breaker.configured(config),
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
        on_settled=settled,
    )
    summary = done.summary
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
    counts["forecast agreed"] = int(bool(done.comparison.get("agreed")))
    return counts


def main() -> int:
    try:
        with local_platform() as base_url:
            return _run_against(base_url)
    except NotConfigured as exc:
        print(exc.code, file=sys.stderr)
        return 2


def _run_against(base_url: str) -> int:
    settings.get.cache_clear()
    platform.cache_clear()
    print(f"billing run against {base_url}", file=sys.stderr)
    counts = run()
    print("summary: " + ", ".join(f"{name} {counts[name]}" for name in ORDER))
    print("forecast: " + ("agreed with the run" if counts["forecast agreed"] else "DIFFERED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
