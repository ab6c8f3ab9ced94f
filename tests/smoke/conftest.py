"""Start the local server exactly as `make run` does, on free ports and its own database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from scripts import devdb

ROOT = Path(__file__).resolve().parents[2]
# The server enforces API keys, as deployed stages do: one key per caller (README).
WEBSITE_KEY, BILLING_KEY = "smoke-website-key", "smoke-billing-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def local_server(admin_url, tmp_path_factory):
    name = f"beerclub_smoke_{uuid.uuid4().hex[:8]}"
    url = devdb.ensure_database(admin_url, name)
    port, fake_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PORT": str(port),
        "LAMBDA_PORT": str(free_port()),
        "FAKE_ECOMM_PORT": str(fake_port),
        "API_KEY": f"{WEBSITE_KEY},{BILLING_KEY}",
        # Where the server records its fake platform for `make billing-run`: not the
        # developer's .run/ (a `make run` of theirs may be running).
        "RUN_DIR": str(tmp_path_factory.mktemp("run")),
    }
    for var in ("ECOMM_BASE_URL", "ECOMM_API_KEY", "ECOMM_API_SECRET"):
        env.pop(var, None)
    log = tmp_path_factory.mktemp("smoke") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "serve.sh"), "--demo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"local server exited early:\n{log.read_text()[-3000:]}")
        try:
            requests.get(f"{base}/subscription/eligible", timeout=10)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGTERM)
                pytest.fail(f"local server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    website, billing = requests.Session(), requests.Session()
    website.headers["x-api-key"] = WEBSITE_KEY
    billing.headers["x-api-key"] = BILLING_KEY
    yield {
        "base": base,
        "fake": f"http://127.0.0.1:{fake_port}",
        "log": log,
        "run_dir": Path(env["RUN_DIR"]),
        "database_url": url,
        "process": proc,
        "website": website,
        "billing": billing,
    }
    if proc.poll() is None:  # a test may have stopped it already
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    devdb.drop_database(admin_url, name)
