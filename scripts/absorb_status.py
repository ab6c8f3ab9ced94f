"""The scheduled current-status absorber, locally (what the cloud runs every minute).

python -m scripts.absorb_status            # one run of up to --budget seconds
python -m scripts.absorb_status --loop     # forever (scripts/serve.sh starts it for make run)

Uses DATABASE_URL. Folds the marks of bulk writes into subscription_current_status in
slices (or rebuilds it when most of it is marked) and vacuums it afterwards, so that
GET /subscription/eligible is back on its fast path within seconds, with no request
paying for it (docs/eligible-cache.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sqlalchemy import create_engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=55.0, help="seconds per run")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks")
    parser.add_argument("--loop", action="store_true", help="run until interrupted")
    args = parser.parse_args(argv)
    from repositories.status_absorber import Absorber

    engine = create_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
    absorber = Absorber(engine)
    try:
        while True:
            summary = absorber.run(args.budget, args.poll)
            if summary.absorbed or summary.vacuums or summary.errors or not args.loop:
                print(json.dumps({"absorber": summary.as_dict()}), flush=True)
            if not args.loop:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
