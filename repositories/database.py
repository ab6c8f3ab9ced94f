"""The one place that builds the engine: lazily, once per warm container."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine

from common import settings


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


def reset() -> None:
    """Forget the engine (tests that switch databases, or after a settings change)."""
    if engine.cache_info().currsize:
        engine().dispose()
    engine.cache_clear()
