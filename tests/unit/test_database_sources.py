"""Where the database is: DATABASE_URL, DATABASE_SECRET_ID, the evaluation platform's secret,
then the scope file (docs/evaluation-platform.md)."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from moto import mock_aws

from adapters import secrets
from common import settings

REGION, OTHER_REGION = "us-west-2", "eu-west-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
PLATFORM = {
    "database_type": "postgresql",
    "driver": "psycopg2",
    "db_user": "challenge",
    "db_password": "pl4tform",
    "db_host": "platform.rds",
    "db_port": "5432",
    "db_name": "subscriptions",
}
PLATFORM_URL = "postgresql+psycopg2://challenge:pl4tform@platform.rds:5432/subscriptions"
FILE_URL = "postgresql+psycopg2://file:f@file.host:5432/fromfile"
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "svc-dev-eligible", "AWS_REGION": REGION}


@pytest.fixture(autouse=True)
def fresh_cache():
    secrets.forget_database_secrets()
    yield
    secrets.forget_database_secrets()


@pytest.fixture(scope="module")
def moto_secrets():
    # One mock for the module (starting one is the slow part); each test empties it.
    saved = {name: os.environ.pop(name, None) for name in ("AWS_PROFILE", *FAKE_CREDENTIALS)}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with mock_aws():
            yield {
                region: boto3.client("secretsmanager", region_name=region)
                for region in (REGION, OTHER_REGION)
            }
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


@pytest.fixture
def aws(moto_secrets):
    yield moto_secrets[REGION]
    for client in moto_secrets.values():
        for secret in client.list_secrets()["SecretList"]:
            client.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)


@pytest.fixture
def scope_files(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)
    database = {
        "db_user": "file",
        "db_password": "f",
        "db_host": "file.host",
        "db_name": "fromfile",
    }
    for scope in ("model", "staging"):
        (tmp_path / f"{scope}_config.json").write_text(json.dumps({"database": database}))
    return tmp_path


def put(client, value, name=settings.PLATFORM_SECRET_NAME) -> None:
    client.create_secret(Name=name, SecretString=json.dumps(value))


def test_in_lambda_with_only_the_platform_secret_the_database_comes_from_it(aws, scope_files):
    # Given the challenge's secret with its db_* keys, and no DATABASE_URL or DATABASE_SECRET_ID
    put(aws, PLATFORM)
    # When a function in us-west-2 resolves its database
    url = settings.load(IN_LAMBDA).resolved_database_url()
    # Then it is the secret's, not model_config.json's
    assert url == PLATFORM_URL


def test_the_platform_secret_may_hold_rds_keys(aws, scope_files):
    put(aws, {"username": "u", "password": "p", "host": "proxy", "port": 5433, "dbname": "d"})
    assert settings.load(IN_LAMBDA).resolved_database_url() == (
        "postgresql+psycopg2://u:p@proxy:5433/d"
    )


def test_database_url_and_then_database_secret_id_win_over_the_platform_secret(aws, scope_files):
    # Given the platform's secret and an RDS secret of our own
    put(aws, PLATFORM)
    put(aws, {"username": "ours", "password": "o", "host": "ours.rds", "dbname": "d"}, "ours")
    # When both environment settings are present, then one, then none
    with_url = {**IN_LAMBDA, "DATABASE_URL": "postgresql://env/db", "DATABASE_SECRET_ID": "ours"}
    with_id = {**IN_LAMBDA, "DATABASE_SECRET_ID": "ours"}
    # Then the first found wins
    assert settings.load(with_url).resolved_database_url() == "postgresql://env/db"
    assert settings.load(with_id).resolved_database_url() == (
        "postgresql+psycopg2://ours:o@ours.rds:5432/d"
    )
    assert settings.load(IN_LAMBDA).resolved_database_url() == PLATFORM_URL


def test_without_the_secret_the_scope_file_describes_the_database(aws, scope_files):
    # Given no secret at all in the region
    # When a function resolves its database with the starting repository's `scope` variable
    url = settings.load({**IN_LAMBDA, "scope": "staging"}).resolved_database_url()
    # Then the scope file is read
    assert url == FILE_URL


def test_secret_name_and_region_come_from_the_environment(aws, scope_files):
    # Given the secret under another name, and the platform's name in another region
    put(aws, PLATFORM, "their/db")
    other = boto3.client("secretsmanager", region_name=OTHER_REGION)
    put(other, {**PLATFORM, "db_host": "elsewhere"})
    # When the function names that secret
    url = settings.load({**IN_LAMBDA, "DATABASE_SECRET_NAME": "their/db"}).resolved_database_url()
    # Then it is read, in the function's own region only
    assert url == PLATFORM_URL
    assert settings.load(IN_LAMBDA).resolved_database_url() == FILE_URL


def test_a_local_run_never_asks_aws(aws, scope_files):
    # Given the secret exists, but neither Lambda nor a region is in the environment
    put(aws, PLATFORM)
    # When settings resolve the database
    url = settings.load({}).resolved_database_url()
    # Then model_config.json answered, and AWS was not asked
    assert url == FILE_URL


def test_unreachable_aws_falls_back_to_the_scope_file(scope_files, monkeypatch, tmp_path):
    # Given a region but no credentials anywhere (and no instance metadata)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # When settings resolve the database
    url = settings.load({"AWS_REGION": REGION}).resolved_database_url()
    # Then the scope file answered
    assert url == FILE_URL


def test_a_secret_that_cannot_be_used_is_an_error_that_shows_no_value(aws, scope_files):
    # Given the platform's secret without a host port that is a number
    put(aws, {**PLATFORM, "db_port": "not-a-port"})
    # When settings resolve the database
    with pytest.raises(settings.SettingsError) as raised:
        settings.load(IN_LAMBDA).resolved_database_url()
    # Then the error names the secret and the key, never falls back, never shows the password
    assert settings.PLATFORM_SECRET_NAME in str(raised.value)
    assert "db_port" in str(raised.value)
    assert "pl4tform" not in str(raised.value)


def test_a_secret_that_is_not_json_is_an_error(aws, scope_files):
    aws.create_secret(Name=settings.PLATFORM_SECRET_NAME, SecretString="host=x password=y")
    with pytest.raises(settings.SettingsError, match="not a JSON object"):
        settings.load(IN_LAMBDA).resolved_database_url()


def test_a_missing_database_secret_id_is_an_error_not_a_fallback(aws, scope_files):
    with pytest.raises(settings.SettingsError, match="nope does not exist"):
        settings.load({**IN_LAMBDA, "DATABASE_SECRET_ID": "nope"}).resolved_database_url()


def test_scope_build_reads_the_platform_secret_even_outside_lambda(aws, scope_files):
    # Given the platform's secret, and a shell that only names the region
    put(aws, PLATFORM)
    # When the scope is build
    url = settings.load({"SCOPE": "build", "AWS_DEFAULT_REGION": REGION}).resolved_database_url()
    # Then the secret answers
    assert url == PLATFORM_URL


def test_scope_build_without_the_secret_is_an_error_naming_it(aws, scope_files):
    with pytest.raises(settings.SettingsError, match=settings.PLATFORM_SECRET_NAME):
        settings.load({"scope": "build", "AWS_REGION": REGION}).resolved_database_url()


def test_the_secret_is_read_once_per_container_until_a_refresh(aws, scope_files):
    # Given the platform's secret, read once
    put(aws, PLATFORM)
    config = settings.load(IN_LAMBDA)
    first = config.resolved_database_url()
    # When it is rotated in AWS
    rotated = {**PLATFORM, "db_password": "r0tated"}
    aws.put_secret_value(SecretId=settings.PLATFORM_SECRET_NAME, SecretString=json.dumps(rotated))
    # Then the container keeps its copy until it asks for a refresh, and keeps the new one
    assert config.resolved_database_url() == first
    assert "r0tated" in config.resolved_database_url(refresh=True)
    assert "r0tated" in config.resolved_database_url()


def test_an_unusable_secret_is_a_503_envelope_that_names_it_but_shows_no_value(
    aws, monkeypatch, logs
):
    from handlers import eligible
    from repositories import database
    from tests.events import api_event, invoke

    # Given a function in Lambda whose only database source is a secret it cannot use
    put(aws, {**PLATFORM, "db_port": "not-a-port"})
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in IN_LAMBDA.items():
        monkeypatch.setenv(name, value)
    settings.get.cache_clear()
    database.reset()
    try:
        # When it is called
        status, body, _ = invoke(
            eligible.lambda_handler, api_event("GET", "/subscription/eligible")
        )
    finally:
        settings.get.cache_clear()
        database.reset()
    # Then a 503 in the envelope, and the log says which secret and key, never the password
    assert (status, body["error"]["code"]) == (503, "database_unavailable")
    assert settings.PLATFORM_SECRET_NAME in logs.text()
    assert "pl4tform" not in logs.text()
