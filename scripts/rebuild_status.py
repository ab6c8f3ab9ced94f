"""Rebuild subscription_current_status from the history, in one statement, and have every
container read the clubs again.

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
        # Clubs written with the triggers off left no row in club_write (revision 0015):
        # this one, which no earlier snapshot saw, makes every container read the clubs
        # again (eligible's guess, GET /clubs' list; docs/eligible-cache.md).
        conn.execute(text("INSERT INTO club_write DEFAULT VALUES"))
    engine.dispose()
    print(f"subscription_current_status: {rows} rows in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
