"""`make release-cancellations`: release the cancellations the billing breaker held.

    python -m scripts.release_cancellations [--list] [--operator NAME]

`--list` shows what is held. Otherwise every held cancellation is released (audited with
the operator's name) and carried out by the billing worker's own rules: each ledger row is
re-read under lock and only a period still declined past its window (or a card report
still standing) cancels anyone.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections import Counter
from datetime import timedelta

from common import clock, settings
from domain import cancellation_breaker, operations
from handlers.charge import platform
from repositories.unit_of_work import SqlAlchemyUnitOfWork


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="only list the held cancellations")
    parser.add_argument("--operator", default=os.environ.get("USER") or getpass.getuser())
    args = parser.parse_args(argv)
    if args.list:
        for message in cancellation_breaker.held(SqlAlchemyUnitOfWork()):
            print(f"{message.subscription_id}\t{message.period}\t{message.reason}")
        return 0
    config = settings.get()
    released = operations.release_cancellations(
        SqlAlchemyUnitOfWork,
        platform,
        args.operator,
        clock.now,
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
    )
    outcomes = Counter(outcome.value for _, outcome in released)
    print(
        f"released {len(released)}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
