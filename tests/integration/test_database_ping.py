"""The engine pings a pooled connection only after it sat idle (repositories/database.py):
one reused at once costs no round trip, one idle for a while is checked and replaced when
the server dropped it."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from repositories import database


@pytest.fixture
def engine(database_url):
    built = database.ping_when_idle(create_engine(database_url, pool_size=1, max_overflow=0))
    yield built
    built.dispose()


@pytest.fixture
def clock(monkeypatch):
    """The wall clock the pool reads, moved by hand."""
    current = {"now": 1_000_000.0}
    monkeypatch.setattr(database.time, "time", lambda: current["now"])
    return current


@pytest.fixture
def pings(engine, monkeypatch):
    count = {"pings": 0}
    real = engine.dialect.do_ping

    def counted(dbapi_connection):
        count["pings"] += 1
        return real(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return count


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT pg_backend_pid()"))


def test_a_connection_reused_at_once_is_not_pinged(engine, clock, pings):
    # Given a connection just used and returned
    first = backend_pid(engine)
    # When it is checked out again within the second
    clock["now"] += 0.5
    second = backend_pid(engine)
    # Then it is the same connection, handed out without a ping
    assert (second, pings["pings"]) == (first, 0)


def test_an_idle_connection_is_pinged_and_kept_when_alive(engine, clock, pings):
    # Given a connection returned to the pool two seconds ago
    first = backend_pid(engine)
    clock["now"] += 2
    # When it is checked out again
    second = backend_pid(engine)
    # Then it was pinged once, and kept
    assert (second, pings["pings"]) == (first, 1)


def test_an_idle_connection_the_server_dropped_is_replaced(engine, db, clock, pings):
    # Given a pooled connection the server terminated while it sat idle
    first = backend_pid(engine)
    with db.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    clock["now"] += 2
    # When it is checked out again, Then the ping finds it dead and a fresh one serves
    second = backend_pid(engine)
    assert second != first
    assert pings["pings"] == 1
