"""`make reconcile`: the platform's orders against the ledger, as a table and JSON.

    python -m scripts.reconcile [--json] [--resolve ID --note "refunded order ..."]

Against ECOMM_BASE_URL, or the fake platform a running `make run` recorded (whatever its
port; see scripts/billing_run.py), or one on FAKE_ECOMM_PORT (4010). Exit status 1 when
there is something to review (double charges, orders without a ledger row, ledger rows
without an order, open anomalies, rows whose outcome the platform could not tell).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from common import clock
from domain import reconciliation
from fake_ecommerce import server as fake
from handlers import reconcile as handler
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from scripts import billing_run


def use_local_platform() -> bool:
    """Point at the running fake platform, if there is one; False when none answers (a
    temporary fake would hold no orders: every ledger row would look unmatched)."""
    server = billing_run.running_server()
    url = server.get("FAKE_ECOMM_URL")
    if not (url and billing_run._answers(url)):
        url = f"http://127.0.0.1:{os.environ.get('FAKE_ECOMM_PORT') or 4010}"
        if not billing_run._answers(url):
            return False
    os.environ["ECOMM_BASE_URL"] = url
    os.environ.setdefault("ECOMM_API_KEY", server.get("ECOMM_API_KEY", fake.DEFAULT_API_KEY))
    os.environ.setdefault(
        "ECOMM_API_SECRET", server.get("ECOMM_API_SECRET", fake.DEFAULT_API_SECRET)
    )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON report only")
    parser.add_argument("--resolve", type=int, help="close the anomaly with this id")
    parser.add_argument("--note", help="what was done (e.g. 'refunded order X on ...')")
    parser.add_argument("--operator", default=os.environ.get("USER") or getpass.getuser())
    args = parser.parse_args(argv)
    if args.resolve is not None:
        if not args.note:
            parser.error("--resolve needs --note saying what was done")
        done = reconciliation.resolve(
            SqlAlchemyUnitOfWork(), args.resolve, args.note, args.operator, clock.now()
        )
        print(
            f"anomaly {args.resolve} " + ("resolved" if done else "not found or already resolved")
        )
        return 0 if done else 1
    if not os.environ.get("ECOMM_BASE_URL") and not use_local_platform():
        print(
            "reconciliation not started: no platform to ask (set ECOMM_BASE_URL, or start"
            " `make run`, whose fake platform holds the local orders). Nothing was written.",
            file=sys.stderr,
        )
        return 2
    report = handler.run()
    if not args.json:
        print(report.to_table())
        print()
    print(report.to_json())
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
