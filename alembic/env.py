from logging.config import fileConfig

from sqlalchemy import create_engine, pool

from alembic import context
from common import settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """`-x scope=build` reads the evaluation platform's secret (as its pipeline runs
    `alembic -x scope=build upgrade head`); another `-x scope=` names its config file; no
    scope: the run-time order (DATABASE_URL first, as `make migrate` sets it)."""
    scope = context.get_x_argument(as_dictionary=True).get("scope")
    if scope == settings.BUILD_SCOPE:
        return settings.load().platform_database_url()
    if scope:
        return settings.url_from_scope(scope)
    return settings.load().resolved_database_url()


def run_migrations_offline() -> None:
    context.configure(url=database_url(), literal_binds=True, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = create_engine(database_url(), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
