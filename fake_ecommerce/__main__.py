"""`python -m fake_ecommerce`: serve the fake platform until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from fake_ecommerce import server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fake_ecommerce",
        description="Fake of the e-commerce platform's order API (POST /order/{request_id}).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=4010,
        help="port to bind, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_ECOMM_API_KEY", server.DEFAULT_API_KEY),
        help="expected x-api-key (default: $FAKE_ECOMM_API_KEY or %(default)s)",
    )
    parser.add_argument(
        "--api-secret",
        default=os.environ.get("FAKE_ECOMM_API_SECRET", server.DEFAULT_API_SECRET),
        # The default is not printed: --help must not show a secret taken from the environment.
        help="expected x-api-secret (default: $FAKE_ECOMM_API_SECRET or local-api-secret)",
    )
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("FAKE_ECOMM_WEBHOOK_URL"),
        help="send signed webhooks (payment outcomes, /control/webhook events) to this URL",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("FAKE_ECOMM_WEBHOOK_SECRET"),
        help="the shared secret that signs webhooks (default: $FAKE_ECOMM_WEBHOOK_SECRET)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        platform = server.start(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            api_secret=args.api_secret,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
        )
    except OSError as exc:
        print(
            f"fake e-commerce platform: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"fake e-commerce platform listening on {platform.base_url}", flush=True)
    try:
        stop_requested.wait()
    finally:
        platform.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
