"""Secrets: from the environment locally, from AWS in the cloud.

In the cloud ECOMM_API_SECRET_ID names the e-commerce API secret: an SSM SecureString when
it starts with "/", else a Secrets Manager secret. Powertools caches it per container (one
fetch per hour). The database secret (a JSON object) is cached per container until the
database refuses it: common.settings and repositories.database ask for it again then.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from common.settings import Settings, SettingsError
from domain.errors import PlatformNotConfigured, WebhookNotConfigured

CACHE_SECONDS = 3600
# A start-up must not hang on an unreachable AWS: a few seconds, then the next source.
_CLIENT_CONFIG = {
    "connect_timeout": 3,
    "read_timeout": 5,
    "retries": {"max_attempts": 2, "mode": "standard"},
}

_database_secrets: dict[tuple[str, str | None], dict[str, Any]] = {}
_lock = threading.Lock()


class SecretUnavailable(SettingsError):
    """The secret does not exist, or AWS cannot be asked (no credentials, no region, no
    network): the settings may fall back to the next source."""


def database_secret(name: str, region: str | None, refresh: bool = False) -> dict[str, Any]:
    """The JSON object of the Secrets Manager secret `name`, cached per container."""
    key = (name, region)
    with _lock:
        if not refresh and key in _database_secrets:
            return _database_secrets[key]
        value = _read_json_secret(name, region)
        _database_secrets[key] = value
        return value


def forget_database_secrets() -> None:
    with _lock:
        _database_secrets.clear()


def _read_json_secret(name: str, region: str | None) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.session.Session().client(
            "secretsmanager", region_name=region, config=Config(**_CLIENT_CONFIG)
        )
        answer = client.get_secret_value(SecretId=name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        if code == "ResourceNotFoundException":
            raise SecretUnavailable(f"the secret {name} does not exist") from None
        raise SettingsError(f"cannot read the secret {name}: {code}") from None
    except BotoCoreError as exc:
        raise SecretUnavailable(f"AWS cannot be asked for {name}: {type(exc).__name__}") from None
    try:
        value = json.loads(answer.get("SecretString") or "")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise SettingsError(f"the secret {name} is not a JSON object")
    return value


def ecomm_api_secret(config: Settings) -> str:
    if config.ecomm_api_secret is not None:
        return config.ecomm_api_secret.get_secret_value()
    return _from_aws(
        config.ecomm_api_secret_id,
        PlatformNotConfigured,
        "set ECOMM_API_SECRET or ECOMM_API_SECRET_ID",
    )


def webhook_secret(config: Settings) -> str:
    """The shared secret of the platform's webhooks: WEBHOOK_SECRET, or WEBHOOK_SECRET_ID."""
    if config.webhook_secret is not None:
        return config.webhook_secret.get_secret_value()
    return _from_aws(
        config.webhook_secret_id, WebhookNotConfigured, "set WEBHOOK_SECRET or WEBHOOK_SECRET_ID"
    )


def _from_aws(name: str | None, missing: type[Exception], hint: str) -> str:
    """An SSM SecureString (a name starting with "/") or a Secrets Manager secret, cached."""
    if not name:
        raise missing(hint)
    # Imported here: only the functions that need a secret pay for boto3.
    from aws_lambda_powertools.utilities import parameters

    if name.startswith("/"):
        value = parameters.get_parameter(name, decrypt=True, max_age=CACHE_SECONDS)
    else:
        value = parameters.get_secret(name, max_age=CACHE_SECONDS)
    if not value:
        raise missing(f"the secret {name} is empty")
    return str(value)
