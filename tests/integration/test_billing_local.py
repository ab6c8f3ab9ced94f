"""`make billing-run`: the same producer and worker, in-process, with a summary."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from scripts import billing_run
from tests import builders, platforms

NOW = datetime(2026, 11, 1, 7)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


@pytest.fixture
def club_members(db, now):
    now(NOW)
    club = builders.club(db)
    subs = [builders.subscription(db, club) for _ in range(4)]
    builders.subscription(db, club, status_id=3)  # paused: not eligible, not looked at
    return subs


def test_a_local_run_charges_what_is_due_and_counts_every_outcome(db, club_members, platform):
    # Given four due members, the second declined by the platform
    platform.set_mode("reject", times=1)
    # When the local billing run runs, its output not a terminal
    out = io.StringIO()
    counts = billing_run.run(out)
    # Then three were charged and one failed, and no progress bar was drawn
    assert (counts["charged"], counts["failed"], counts["already charged"]) == (3, 1, 0)
    assert out.getvalue() == ""
    # When it runs again the same day
    again = billing_run.run(io.StringIO())
    # Then the charged ones are already charged and the declined one is retried
    assert (again["already charged"], again["charged"], again["failed"]) == (3, 1, 0)
    assert len(platform.orders) == 4


def test_a_local_run_draws_a_progress_bar_on_a_terminal(db, club_members, platform):
    # Given four due members, When the run's output is a terminal
    out = Terminal()
    billing_run.run(out)
    # Then a progress bar counted to four
    assert "[" in out.getvalue()
    assert "4/4 charged 4" in out.getvalue()


def test_the_local_run_prints_its_summary(db, club_members, platform, capsys):
    # Given four due members and the platform configured by ECOMM_BASE_URL
    # When `make billing-run` runs the script
    assert billing_run.main() == 0
    # Then the summary names every outcome
    assert (
        "summary: charged 4, already charged 0, failed 0, platform error 0, skipped 0, cancelled 0"
        in capsys.readouterr().out
    )
