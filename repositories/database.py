"""The one place that builds the engine: lazily, once per warm container."""

from __future__ import annotations

import re
import threading
import time
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InvalidatePoolError, OperationalError

from common import settings

# What PostgreSQL says when it refuses the credentials themselves: a rotated password, or
# a rotated user (the alternating-users rotation).
_REFUSED = re.compile(r"authentication failed|role \"[^\"]*\" does not exist")
_reread = threading.Lock()
# A pooled connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


@lru_cache(maxsize=1)
def engine() -> Engine:
    config = settings.get()
    connect_args = {"connect_timeout": 5, "application_name": "beer-club-subscriptions"}
    if config.db_statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={config.db_statement_timeout_ms}"
    return ping_when_idle(
        create_engine(
            config.resolved_database_url(),
            pool_size=config.db_pool_size,
            max_overflow=config.db_max_overflow,
            pool_recycle=300,
            connect_args=connect_args,
            # Errors (and their log lines) never carry the statement's values: customer ids.
            hide_parameters=True,
        )
    )


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> Engine:
    """`pool_pre_ping` for connections that sat idle: one checked in more than
    `idle_seconds` ago (between invocations, in a container frozen meanwhile) is pinged
    and, if dead, replaced before anyone uses it. One checked in moments ago (a charge's
    second transaction, the next request of a busy container) is handed out as it is: the
    ping would be one more round trip per transaction, as many as a charge's own writes.
    Wall-clock time: it goes on while a Lambda container is frozen."""

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record) -> None:
        record.info["checked_in"] = time.time()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, proxy) -> None:
        checked_in = record.info.pop("checked_in", None)
        if checked_in is None or abs(time.time() - checked_in) <= idle_seconds:
            return  # just connected, or just used
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs
        except Exception as exc:
            # As pool_pre_ping: the pool drops its older connections and connects anew.
            raise InvalidatePoolError("a pooled connection is gone") from exc

    return engine


def connect() -> Connection:
    """A connection from the engine. When the database refuses the credentials, they are
    read again (once) from their secret, so a rotation heals without a new container."""
    current = engine()
    try:
        return current.connect()
    except OperationalError as exc:
        if not refused_credentials(exc):
            raise
        with _reread:
            if engine() is current:  # another thread may have re-read them already
                fresh = settings.get().resolved_database_url(refresh=True)
                if fresh == current.url.render_as_string(hide_password=False):
                    raise  # not from a secret, or the secret did not change: nothing to heal
                _log_reread()
                # The next engine() builds on the secret just read (now in the cache).
                reset()
        return engine().connect()


def refused_credentials(exc: OperationalError) -> bool:
    return bool(_REFUSED.search(str(exc.orig or exc)))


def _log_reread() -> None:
    from common.observability import logger

    logger.warning("database refused the credentials; read them again from the secret")


def reset() -> None:
    """Forget the engine (tests that switch databases, or after a settings change)."""
    if engine.cache_info().currsize:
        engine().dispose()
    engine.cache_clear()
