"""Validated settings, read once per container: environment first, then the scope file.

Where the database is, first found wins (docs/evaluation-platform.md):
1. DATABASE_URL;
2. DATABASE_SECRET_ID, a Secrets Manager secret;
3. the evaluation platform's secret, DATABASE_SECRET_NAME (default PLATFORM_SECRET_NAME), in
   the function's region: asked in Lambda, or where AWS_REGION / AWS_DEFAULT_REGION is set,
   and skipped only when it does not exist or AWS cannot be reached;
4. `<scope>_config.json`, the scope from SCOPE or `scope` (default `model`).
The scope `build` means the platform's secret and nothing else.
A secret holds either the challenge's keys (db_user, db_password, db_host, ...) or RDS's
(username, password, host, port, dbname).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from sqlalchemy.engine import URL

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ECOMM_BASE_URL = "https://emporiodev.com/la-estores-hiring-deploy/assessment/ecomm-mock"
# The secret the evaluation platform's pipeline creates for this service's database.
PLATFORM_SECRET_NAME = "la-estores-hiring-challenge-back-subscription-dbaccess"  # noqa: S105 (a name)
# `alembic -x scope=build` (and SCOPE=build): the platform's secret, never a file.
BUILD_SCOPE = "build"


class SettingsError(RuntimeError):
    """The configuration cannot be used; raised at start-up, never shown to clients."""


class DatabaseConfig(BaseModel):
    """The `database` section of `<scope>_config.json` (the legacy configuration format)."""

    database_type: str = "postgresql"
    driver: str = "psycopg2"
    db_user: str
    db_password: SecretStr = SecretStr("")
    db_host: str = "localhost"
    db_port: int = 5432
    db_name: str

    def url(self) -> str:
        # A host that is a directory is a Unix socket (as the embedded PostgreSQL uses).
        socket = self.db_host.startswith("/")
        return URL.create(
            drivername=f"{self.database_type}+{self.driver}",
            username=self.db_user,
            password=self.db_password.get_secret_value() or None,
            host=None if socket else self.db_host,
            port=self.db_port,
            database=self.db_name,
            query={"host": self.db_host} if socket else {},
        ).render_as_string(hide_password=False)


def scope_file(scope: str) -> Path:
    if not scope.replace("-", "").replace("_", "").isalnum():
        raise SettingsError(f"invalid scope name {scope!r}")
    return PROJECT_ROOT / f"{scope}_config.json"


def url_from_scope(scope: str) -> str:
    """The SQLAlchemy URL described by `<scope>_config.json`."""
    path = scope_file(scope)
    try:
        raw = json.loads(path.read_text())
        return DatabaseConfig.model_validate(raw["database"]).url()
    except ValidationError as exc:
        problems = _problems(exc)
        raise SettingsError(f"cannot read database settings from {path.name}: {problems}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"cannot read database settings from {path.name}: {exc}") from exc


def _problems(exc: ValidationError) -> str:
    # Field and rule only: the input may be a password.
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


def url_from_secret(
    secret: object,
    name: str,
    host: str | None = None,
    port: int | None = None,
    database: str | None = None,
) -> str:
    """A database secret in either format: the challenge's `db_*` keys or RDS's.

    `host`, `port` and `database` (DATABASE_HOST/PORT/NAME: RDS Proxy's endpoint) win over
    the secret's: an RDS-managed secret holds only the user name and the password.
    """
    if isinstance(secret, dict) and "db_user" in secret:
        overrides = {"db_host": host, "db_port": port, "db_name": database}
        try:
            config = DatabaseConfig.model_validate(secret)
            return config.model_copy(
                update={k: v for k, v in overrides.items() if v is not None}
            ).url()
        except ValidationError as exc:
            raise SettingsError(f"the secret {name} is not usable: {_problems(exc)}") from None
    if isinstance(secret, dict) and "username" in secret:
        try:
            return url_from_rds_secret(secret, host, port, database)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"the secret {name} is not usable: {type(exc).__name__}") from None
    raise SettingsError(
        f"the secret {name} holds neither db_user/db_host/... nor username/host/... keys"
    )


def url_from_rds_secret(
    secret: dict[str, Any],
    host: str | None = None,
    port: int | None = None,
    database: str | None = None,
) -> str:
    """An RDS-style secret (username, password, host, port, dbname) as a SQLAlchemy URL.

    `host`, `port` and `database` (DATABASE_HOST/PORT/NAME: RDS Proxy's endpoint) win over
    the secret's: an RDS-managed secret holds only the user name and the password.
    """
    return URL.create(
        drivername="postgresql+psycopg2",
        username=secret["username"],
        password=secret.get("password"),
        host=host or secret.get("host"),
        port=int(port or secret.get("port") or 5432),
        database=database or secret.get("dbname") or secret.get("dbName") or "postgres",
    ).render_as_string(hide_password=False)


class Settings(BaseModel):
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; wins over every other database setting"
    )
    database_secret_id: str | None = Field(
        default=None, description="Secrets Manager id of an RDS-style secret (cloud)"
    )
    database_secret_name: str = Field(
        default=PLATFORM_SECRET_NAME,
        description="the evaluation platform's database secret, tried after DATABASE_SECRET_ID",
    )
    scope: str = Field(
        default="model", description="reads <scope>_config.json; `build`: the platform's secret"
    )
    # Set by Lambda (or by a shell that means to talk to AWS): only then is the platform's
    # secret asked for, so that local runs never wait on AWS.
    aws_lambda_function_name: str | None = None
    aws_region: str | None = None
    aws_default_region: str | None = None
    database_host: str | None = Field(
        default=None, description="with DATABASE_SECRET_ID: the host to connect to (RDS Proxy)"
    )
    database_port: int | None = Field(default=None, ge=1, le=65535)
    database_name: str | None = None
    db_pool_size: int = Field(default=1, ge=1, le=50)
    db_max_overflow: int = Field(default=1, ge=0, le=50)
    db_statement_timeout_ms: int = Field(default=20_000, ge=0)
    cors_allow_origin: str = "*"
    api_key: SecretStr | None = Field(
        default=None,
        description="comma-separated API keys accepted in x-api-key; unset: no key needed",
    )
    ecomm_base_url: str = DEFAULT_ECOMM_BASE_URL
    ecomm_api_key: str = ""
    ecomm_api_secret: SecretStr | None = None
    ecomm_api_secret_id: str | None = Field(
        default=None, description="Secrets Manager id or SSM parameter name holding the secret"
    )
    ecomm_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="read timeout of a platform call"
    )
    ecomm_connect_timeout_seconds: float = Field(
        default=3.05, gt=0, le=60, description="connect timeout of a platform call"
    )
    charge_pending_timeout_seconds: int = Field(default=60, ge=1)
    billing_queue_url: str | None = Field(
        default=None, description="the SQS queue the billing run sends one message per charge to"
    )
    billing_retry_days: float = Field(
        default=5, ge=0, le=60, description="days after a billing date a failed charge is retried"
    )
    ecomm_order_lookup: bool = Field(
        default=True,
        description="the platform answers GET /order/{request_id}; false: reconciliation "
        "reports rows with an unknown outcome for review instead of asking",
    )
    billing_max_cancellations: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="the billing run's breaker: most cancellations per run, as a fraction "
        "of the due set (with BILLING_MAX_CANCELLATIONS_FLOOR as the floor)",
    )
    billing_max_cancellations_floor: int = Field(
        default=25, ge=0, description="the breaker lets at least this many through"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="the shared secret of the platform's webhooks (local)"
    )
    webhook_secret_id: str | None = Field(
        default=None, description="SSM parameter name or Secrets Manager id of that secret"
    )
    webhook_tolerance_seconds: int = Field(
        default=300, ge=1, le=3600, description="how old a webhook's timestamp may be"
    )
    eligible_max_response_bytes: int = Field(
        default=6_000_000,
        ge=1,
        description="largest eligible answer sent inline (API Gateway stops at 6 MB)",
    )
    eligible_export_bucket: str | None = Field(
        default=None, description="S3 bucket for eligible answers too large to send inline"
    )
    # Flash promos.
    promo_hold_seconds: int = Field(
        default=60, ge=1, le=3600, description="how long a promo reservation holds its unit"
    )
    promo_queue_url: str | None = Field(
        default=None, description="SQS queue of promo announcements (customers to notify)"
    )
    promo_topic_arn: str | None = Field(
        default=None, description="SNS topic the CRM subscribes to (one message per customer)"
    )
    promo_notifications_file: str | None = Field(
        default=None, description="locally: the JSON-lines file promo notifications go to"
    )
    promo_notification_lease_seconds: int = Field(
        default=300, ge=1, description="after this, an unsent claimed notification is retaken"
    )

    @field_validator("ecomm_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def api_keys(self) -> tuple[bytes, ...]:
        if self.api_key is None:
            return ()
        keys = (key.strip() for key in self.api_key.get_secret_value().split(","))
        return tuple(key.encode() for key in keys if key)

    def region(self) -> str | None:
        return self.aws_region or self.aws_default_region

    def resolved_database_url(self, refresh: bool = False) -> str:
        """The database, first found wins (see the module's docstring). Secrets are cached
        per container; `refresh` reads them again (after the database refused them)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.database_secret_id:
            return self._url_from_aws(self.database_secret_id, refresh)
        if self.scope == BUILD_SCOPE:
            return self.platform_database_url(refresh)
        if self.aws_lambda_function_name or self.region():
            from adapters import secrets

            try:
                return self._url_from_aws(self.database_secret_name, refresh)
            except secrets.SecretUnavailable as exc:
                _log_fallback(self.scope, str(exc))
        return url_from_scope(self.scope)

    def platform_database_url(self, refresh: bool = False) -> str:
        """The evaluation platform's secret, required (`-x scope=build`)."""
        return self._url_from_aws(self.database_secret_name, refresh)

    def _url_from_aws(self, name: str, refresh: bool) -> str:
        # Imported here: boto3 is paid for only by a container that reads a secret.
        from adapters import secrets

        secret = secrets.database_secret(name, self.region(), refresh)
        return url_from_secret(
            secret, name, self.database_host, self.database_port, self.database_name
        )


def _log_fallback(scope: str, reason: str) -> None:
    from common.observability import logger

    logger.info("database secret not used", reason=reason, fallback=f"{scope}_config.json")


FIELDS = tuple(Settings.model_fields)


def load(environ: dict[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values = {name: environ[name.upper()] for name in FIELDS if environ.get(name.upper())}
    if "scope" not in values and environ.get("scope"):
        values["scope"] = environ["scope"]  # the challenge's starting repository's variable
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get() -> Settings:
    return load()
