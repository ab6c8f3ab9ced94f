"""A real PostgreSQL for the tests: the embedded one, or the server DATABASE_URL names.

Each run gets a fresh database on that server, built by `alembic upgrade head`.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text

from alembic import command
from common import clock, settings
from repositories import database
from scripts import devdb

ROOT = Path(__file__).resolve().parent.parent
APP_TABLES = (
    "club, club_status_history, subscription, subscription_status_history, "
    "subscription_claim, superseded_status_change, charge, charge_attempt, "
    "billing_schedule, charge_refund, webhook_event, card_unavailable, billing_audit, "
    "subscription_current_status, subscription_status_dirty"
    ", club_change"
    # the billing run's checkpoint (revision 0013)
    ", billing_run"
    # The operators' desk (issue 16).
    ", billing_forecast, billing_forecast_run"
)
# Flash promos.
APP_TABLES += (
    ", store, customer_profile, promo, promo_unit, promo_reservation, promo_order,"
    " promo_order_attempt, promo_notification"
)
# The money path (issue 12).
APP_TABLES += ", platform_request, charge_anomaly, billing_hold"


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str, revision: str = "head", down: bool = False) -> None:
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        if down:
            command.downgrade(alembic_config(), revision)
        else:
            command.upgrade(alembic_config(), revision)
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous


@pytest.fixture(scope="session")
def admin_url() -> str:
    given = os.environ.get("DATABASE_URL")
    if given:
        return given
    return devdb.server_url(ROOT / ".pgdata-test")


@pytest.fixture(scope="session")
def database_url(admin_url: str):
    name = f"beerclub_test_{uuid.uuid4().hex[:10]}"
    url = devdb.ensure_database(admin_url, name)
    migrate(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DB_POOL_SIZE"] = "20"
    os.environ["DB_MAX_OVERFLOW"] = "10"
    settings.get.cache_clear()
    database.reset()
    yield url
    database.reset()
    devdb.drop_database(admin_url, name)


@pytest.fixture(scope="session")
def db(database_url: str) -> Engine:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_db(db: Engine) -> Engine:
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {APP_TABLES} RESTART IDENTITY CASCADE"))
    return db


NOW = datetime(2026, 11, 21, 12, 0, 0)


@pytest.fixture
def now():
    """Pin the clock for the test; returns a setter to move it."""
    current = {"now": NOW}
    clock.set_source(lambda: current["now"])

    def move(to: datetime) -> datetime:
        current["now"] = to
        return to

    move.value = lambda: current["now"]
    yield move
    clock.set_source(None)


@pytest.fixture
def statements():
    """The first four words of each statement sent to the database during the test."""
    from sqlalchemy import event

    sent: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        sent.append(" ".join(statement.split()[:4]))

    event.listen(Engine, "before_cursor_execute", seen)
    yield sent
    event.remove(Engine, "before_cursor_execute", seen)


@pytest.fixture
def logs():
    """The JSON log lines the Powertools logger writes during the test."""
    import io
    import json

    from common.observability import logger

    handler = logger.registered_handler
    previous = handler.stream
    buffer = io.StringIO()
    handler.setStream(buffer)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    lines.text = buffer.getvalue
    yield lines
    handler.setStream(previous)


# `serverless package` once per session (tests/deploy, the smoke test of the bundle).
from tests.packaging import deployed, deployed_template, packages  # noqa: E402, F401
