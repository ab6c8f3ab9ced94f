"""The one place that builds the engine: lazily, once per warm container."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from common import settings

# What PostgreSQL says when it refuses the credentials themselves: a rotated password, or
# a rotated user (the alternating-users rotation).
_REFUSED = re.compile(r"authentication failed|role \"[^\"]*\" does not exist")
_reread = threading.Lock()


@lru_cache(maxsize=1)
def engine() -> Engine:
    config = settings.get()
    connect_args = {"connect_timeout": 5, "application_name": "beer-club-subscriptions"}
    if config.db_statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={config.db_statement_timeout_ms}"
    return create_engine(
        config.resolved_database_url(),
        pool_size=config.db_pool_size,
        max_overflow=config.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=300,
        connect_args=connect_args,
        # Errors (and their log lines) never carry the statement's values: customer ids.
        hide_parameters=True,
    )


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
