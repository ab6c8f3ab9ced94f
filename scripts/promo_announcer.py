"""Announce the flash promos that started, as the scheduled function does in the cloud.

    python -m scripts.promo_announcer            # once
    python -m scripts.promo_announcer --every 60 # every minute (scripts/serve.sh runs this)

serverless-offline runs no schedules, so `make run` starts this loop. Without
PROMO_QUEUE_URL and PROMO_TOPIC_ARN the notifications are delivered at once and recorded,
one JSON line each, in PROMO_NOTIFICATIONS_FILE (default .local/promo-notifications.jsonl).
"""

from __future__ import annotations

import argparse
import sys
import time

from adapters import promo_notifier
from common import settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0, help="seconds between runs; 0: once")
    args = parser.parse_args(argv)
    from handlers import promos_announce

    where = settings.get().promo_notifications_file or promo_notifier.LOCAL_FILE
    while True:
        try:
            for promo in promos_announce.run():
                print(
                    f"promo {promo.promo_id} announced to {promo.customers} customer(s);"
                    f" notifications recorded in {where}",
                    flush=True,
                )
        except Exception as exc:  # the loop outlives a database restart
            print(f"promo announcer: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            if not args.every:
                return 1
        if not args.every:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
