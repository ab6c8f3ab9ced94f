"""The e-commerce API secret: from the environment locally, from AWS in the cloud.

In the cloud ECOMM_API_SECRET_ID names it: an SSM SecureString when it starts with "/",
else a Secrets Manager secret. Powertools caches it per container (one fetch per hour).
"""

from __future__ import annotations

from common.settings import Settings
from domain.errors import PlatformNotConfigured, WebhookNotConfigured

CACHE_SECONDS = 3600


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
