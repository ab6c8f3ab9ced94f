"""The e-commerce secret: environment locally, Secrets Manager or SSM in the cloud, cached."""

from __future__ import annotations

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from adapters import secrets
from common import settings
from domain.errors import PlatformNotConfigured


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parameters.clear_caches()
    with mock_aws():
        yield
    parameters.clear_caches()


def test_the_environment_wins_and_aws_is_not_asked():
    config = settings.load({"ECOMM_API_SECRET": "local", "ECOMM_API_SECRET_ID": "nope"})
    assert secrets.ecomm_api_secret(config) == "local"


def test_a_secrets_manager_secret_is_fetched_once_and_cached():
    # Given the secret in Secrets Manager
    client = boto3.client("secretsmanager")
    client.create_secret(Name="beer-club/prod/ecomm-api-secret", SecretString="from-sm")
    config = settings.load({"ECOMM_API_SECRET_ID": "beer-club/prod/ecomm-api-secret"})
    # When it is read, then changed in AWS, then read again in the same container
    first = secrets.ecomm_api_secret(config)
    client.put_secret_value(SecretId="beer-club/prod/ecomm-api-secret", SecretString="rotated")
    second = secrets.ecomm_api_secret(config)
    # Then the cached value serves the container
    assert (first, second) == ("from-sm", "from-sm")


def test_an_ssm_securestring_is_read_decrypted():
    boto3.client("ssm").put_parameter(
        Name="/beer-club/prod/ecomm-api-secret", Value="from-ssm", Type="SecureString"
    )
    config = settings.load({"ECOMM_API_SECRET_ID": "/beer-club/prod/ecomm-api-secret"})
    assert secrets.ecomm_api_secret(config) == "from-ssm"


def test_no_secret_at_all_is_a_clear_configuration_error():
    with pytest.raises(PlatformNotConfigured, match="ECOMM_API_SECRET"):
        secrets.ecomm_api_secret(settings.load({}))
