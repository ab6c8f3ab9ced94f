"""Every block fenced as ```bash run``` in README.md and docs/*.md runs, in order, against
the local server started as `make run` starts it: a changed answer fails the build.

The blocks of one page run as one bash script (variables carry from block to block, as
they do in a reader's terminal), with the server's addresses and keys in the environment
the blocks read: BASE, FAKE, API_KEY, DATABASE_URL and RUN_DIR.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from tests.smoke.conftest import BILLING_KEY, ROOT, WEBSITE_KEY

pytestmark = pytest.mark.smoke

BLOCK = re.compile(r"^```bash run\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```bash run``` block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def script_of(page) -> str:
    parts = []
    for line, code in runnable_blocks(page.read_text()):
        parts.append(f"echo '>>> {page.name}:{line}' >&2\n{code}")
    return "\n".join(parts)


def test_the_readme_has_a_walkthrough_to_run():
    # The README's walkthrough is the point: it must not silently lose its blocks
    assert len(runnable_blocks((ROOT / "README.md").read_text())) >= 5


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_blocks(p.read_text())], ids=str)
def test_the_runnable_blocks_of_a_page_pass_in_order(local_server, page):
    # Given the local server, with API keys on, and the page's blocks as one script
    env = {
        **os.environ,
        "BASE": local_server["base"],
        "FAKE": local_server["fake"],
        "API_KEY": f"{WEBSITE_KEY},{BILLING_KEY}",
        "DATABASE_URL": local_server["database_url"],
        "RUN_DIR": str(local_server["run_dir"]),
    }
    for name in ("ECOMM_BASE_URL", "ECOMM_API_KEY", "ECOMM_API_SECRET", "WEBHOOK_SECRET"):
        env.pop(name, None)
    # When it runs top to bottom, as a reader would paste it
    result = subprocess.run(
        ["bash", "-c", "set -e -o pipefail\n" + script_of(page)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then every block passed its own checks
    failed_at = [line for line in result.stderr.splitlines() if line.startswith(">>> ")][-1:]
    assert result.returncode == 0, (
        f"failed in the block after {failed_at}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def test_the_running_server_records_its_fake_platform_for_the_billing_run(local_server):
    # Given the server `make run` starts, When it runs, Then it recorded where its fake is
    recorded = (local_server["run_dir"] / "local-server.env").read_text().splitlines()
    assert f"FAKE_ECOMM_URL={local_server['fake']}" in recorded


def test_stopping_the_server_says_whether_the_database_keeps_running(local_server):
    # Given the server (last in this module: it stops it), on a database of DATABASE_URL
    process = local_server["process"]
    # When it is stopped as Ctrl-C or `kill` stops it: a signal to its process group
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    # Then it said what happened to the database, and forgot its fake platform
    log = local_server["log"].read_text()
    assert "the database at DATABASE_URL was not started by this script and keeps running" in log
    assert not (local_server["run_dir"] / "local-server.env").exists()
