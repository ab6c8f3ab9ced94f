"""The local tools a newcomer uses: `make billing-run` finds the running fake platform,
stops before writing when half-configured; `make db-url`, `make db-stop`, `make help`."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import datetime

import pytest

from common import settings
from fake_ecommerce import server as fake
from handlers.charge import platform as platform_client
from scripts import billing_run, devdb
from tests import builders

ROOT = devdb.ROOT
NOW = datetime(2026, 11, 1, 7)


@pytest.fixture
def members(db, now):
    now(NOW)
    club = builders.club(db)
    return [builders.subscription(db, club) for _ in range(2)]


@pytest.fixture
def no_platform_configured(monkeypatch, tmp_path):
    for name in ("ECOMM_BASE_URL", "ECOMM_API_KEY", "ECOMM_API_SECRET", "ECOMM_API_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUN_DIR", str(tmp_path))
    settings.get.cache_clear()
    platform_client.cache_clear()
    yield tmp_path
    settings.get.cache_clear()
    platform_client.cache_clear()


def test_half_configured_billing_run_stops_before_writing_with_one_line(
    db, members, no_platform_configured, monkeypatch, capsys
):
    # Given ECOMM_BASE_URL and a key set, but no secret
    monkeypatch.setenv("ECOMM_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ECOMM_API_KEY", "https://example.test/repo.git")
    # When `make billing-run` runs
    code = billing_run.main()
    # Then it stops with one line naming what is missing, and wrote nothing
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert "ECOMM_API_SECRET (or ECOMM_API_SECRET_ID)" in err[0]
    assert "Nothing was written" in err[0]
    assert builders.count(db, "charge") == 0
    assert builders.count(db, "billing_audit") == 0


def test_billing_run_uses_the_fake_platform_of_the_running_server_on_its_own_port(
    db, members, no_platform_configured, monkeypatch, capsys
):
    # Given `make run` started its fake platform on another port, with its own credentials,
    # and recorded it
    with fake.start(api_key="k-3300", api_secret="s-3300", log_stream=io.StringIO()) as running:
        (no_platform_configured / "local-server.env").write_text(
            f"SERVER_PID=1\nAPI_URL=http://localhost:3300\nFAKE_ECOMM_URL={running.base_url}\n"
            "ECOMM_API_KEY=k-3300\nECOMM_API_SECRET=s-3300\n"
        )
        # When `make billing-run` runs
        assert billing_run.main() == 0
        # Then the orders went to that fake, where `curl <fake>/orders` shows them
        assert len(running.orders) == 2
    captured = capsys.readouterr()
    assert f"billing run against {running.base_url}" in captured.err
    assert "charged 2" in captured.out


def test_without_a_running_server_the_billing_run_says_its_fake_is_temporary(
    db, members, no_platform_configured, monkeypatch, capsys
):
    # Given no running server and nothing on FAKE_ECOMM_PORT
    monkeypatch.setenv("FAKE_ECOMM_PORT", "9")
    # When `make billing-run` runs, Then it charges through a temporary fake and says so
    assert billing_run.main() == 0
    captured = capsys.readouterr()
    assert "temporary fake platform" in captured.err
    assert "charged 2" in captured.out


def test_db_url_prints_a_libpq_url_and_the_sqlalchemy_form_on_request():
    # Given the tests' embedded server
    data = str(ROOT / ".pgdata-test")
    run = [sys.executable, "-m", "scripts.devdb", "url", "--data", data, "--db", "postgres"]
    # When both forms are asked for
    libpq = subprocess.run([*run, "--form", "libpq"], capture_output=True, text=True, cwd=ROOT)
    alchemy = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    # Then the first is what psql accepts, the second what SQLAlchemy names its driver in
    assert libpq.stdout.startswith("postgresql://"), libpq.stderr
    assert alchemy.stdout.startswith("postgresql+psycopg2://"), alchemy.stderr
    psql = devdb._bin("psql")
    answer = subprocess.run(
        [psql, libpq.stdout.strip(), "-Atc", "SELECT 40 + 2"], capture_output=True, text=True
    )
    assert answer.stdout.strip() == "42", answer.stderr


def test_db_stop_stops_the_embedded_server_and_says_so(tmp_path):
    # Given an embedded server started in its own data directory (as root: run as pgserver)
    data = tmp_path / "pgdata"
    devdb.server_url(data)
    assert devdb.running(data)
    # When `make db-stop` stops it
    stop = [sys.executable, "-m", "scripts.devdb", "stop", "--data", str(data)]
    first = subprocess.run(stop, capture_output=True, text=True, cwd=ROOT)
    second = subprocess.run(stop, capture_output=True, text=True, cwd=ROOT)
    # Then it no longer runs, and each call said what it did
    assert not devdb.running(data)
    assert first.returncode == 0, first.stderr
    assert "stopped" in first.stdout
    assert "was not running" in second.stdout


def test_make_help_lists_every_target():
    # Given the targets the Makefile defines
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    # When `make help` runs
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    # Then each target has its line
    listed = set(re.findall(r"^make ([a-z][a-z0-9-]*)", shown, re.MULTILINE))
    listed |= set(re.findall(r"/ make ([a-z][a-z0-9-]*)", shown))
    assert targets - listed == set(), shown
