"""Rebuild subscription_current_status from the history, in one statement.

python -m scripts.rebuild_status   # on DATABASE_URL (make rebuild-status sets it)

Writers never wait for it (their triggers only mark subscriptions dirty); readers stay
exact and keep the previous contents until it commits. About 25 s at a million
subscriptions (BENCHMARKS.md).
"""

from __future__ import annotations

import os
import sys
import time

from sqlalchemy import create_engine, text


def main() -> int:
    engine = create_engine(os.environ["DATABASE_URL"])
    started = time.perf_counter()
    with engine.begin() as conn:
        rows = conn.scalar(text("SELECT subscription_current_status_rebuild()"))
    engine.dispose()
    print(f"subscription_current_status: {rows} rows in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
