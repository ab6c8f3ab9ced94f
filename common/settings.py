"""Validated settings, read once per container: environment first, then the scope file."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from sqlalchemy.engine import URL

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ECOMM_BASE_URL = "https://emporiodev.com/la-estores-hiring-deploy/assessment/ecomm-mock"


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
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"cannot read database settings from {path.name}: {exc}") from exc


def url_from_rds_secret(secret: dict[str, Any]) -> str:
    """An RDS-style secret (username, password, host, port, dbname) as a SQLAlchemy URL."""
    return URL.create(
        drivername="postgresql+psycopg2",
        username=secret["username"],
        password=secret.get("password"),
        host=secret.get("host"),
        port=int(secret.get("port") or 5432),
        database=secret.get("dbname") or secret.get("dbName") or "postgres",
    ).render_as_string(hide_password=False)


class Settings(BaseModel):
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; wins over every other database setting"
    )
    database_secret_id: str | None = Field(
        default=None, description="Secrets Manager id of an RDS-style secret (cloud)"
    )
    scope: str = Field(default="model", description="reads <scope>_config.json")
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
    ecomm_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
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

    @field_validator("ecomm_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def api_keys(self) -> tuple[bytes, ...]:
        if self.api_key is None:
            return ()
        keys = (key.strip() for key in self.api_key.get_secret_value().split(","))
        return tuple(key.encode() for key in keys if key)

    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.database_secret_id:
            from aws_lambda_powertools.utilities import parameters

            secret = parameters.get_secret(self.database_secret_id, transform="json", max_age=300)
            return url_from_rds_secret(secret)
        return url_from_scope(self.scope)


FIELDS = tuple(Settings.model_fields)


def load(environ: dict[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values = {name: environ[name.upper()] for name in FIELDS if environ.get(name.upper())}
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get() -> Settings:
    return load()
