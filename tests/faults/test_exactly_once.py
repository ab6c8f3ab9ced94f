"""The exactly-once matrix (tests/faults/matrix.py): every first outcome against every
second event, with the invariants checked after each. EXACTLY_ONCE_RESULT=<path> writes
the cells as JSON (scripts/exactly_once.py turns them into docs/exactly-once.md)."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import text

from common import settings
from fake_ecommerce import server as fake
from handlers import billing_charge as worker_handler
from handlers import charge as charge_handler
from handlers import webhooks as webhook_handler
from tests.conftest import APP_TABLES
from tests.faults import matrix
from tests.webhook_events import WEBHOOK_SECRET

RESULTS: list[matrix.Cell] = []


@pytest.fixture(scope="module")
def runner(db):
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {APP_TABLES} RESTART IDENTITY CASCADE"))
    book = fake.FakePlatform(log_stream=open(os.devnull, "w"))  # noqa: SIM115
    platform = matrix.MatrixPlatform(book)
    mp = pytest.MonkeyPatch()
    mp.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    mp.setenv("ECOMM_API_SECRET", "matrix")
    mp.setenv("CHARGE_PENDING_TIMEOUT_SECONDS", "60")
    settings.get.cache_clear()
    mp.setattr(charge_handler, "platform", lambda: platform)
    mp.setattr(worker_handler, "platform", lambda: platform)
    current = {"now": matrix.START}
    from common import clock

    clock.set_source(lambda: current["now"])

    def move(to):
        current["now"] = to

    yield matrix.Runner(db, platform, move, (charge_handler, webhook_handler, worker_handler))
    clock.set_source(None)
    mp.undo()
    settings.get.cache_clear()
    book.stop()
    path = os.environ.get("EXACTLY_ONCE_RESULT")
    if path:
        with open(path, "w") as out:
            json.dump([cell.__dict__ for cell in RESULTS], out, indent=1)


@pytest.mark.parametrize("second", matrix.SECOND)
@pytest.mark.parametrize("first", matrix.FIRST)
def test_money_moves_exactly_once(runner, first, second):
    # Given a charge whose first outcome is `first`, When `second` follows, and then
    # everything settles
    cell = runner.run(first, second)
    RESULTS.append(cell)
    # Then one paid order at most, the ledger agrees with the platform, nobody cancelled
    assert cell.result == "pass", cell.detail
