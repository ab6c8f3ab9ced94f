"""Settings: environment first, then the scope file; secrets from Secrets Manager in the cloud."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from common import settings


@pytest.fixture
def scope_file(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)
    path = tmp_path / "staging_config.json"
    path.write_text(
        json.dumps(
            {
                "database": {
                    "database_type": "postgresql",
                    "driver": "psycopg2",
                    "db_user": "app",
                    "db_password": "s3cret",
                    "db_host": "db.internal",
                    "db_port": 5433,
                    "db_name": "clubs",
                }
            }
        )
    )
    return path


def test_the_scope_file_describes_the_database_when_the_environment_does_not(scope_file):
    config = settings.load({"SCOPE": "staging"})
    assert (
        config.resolved_database_url() == "postgresql+psycopg2://app:s3cret@db.internal:5433/clubs"
    )


def test_database_url_in_the_environment_wins_over_the_scope_file(scope_file):
    config = settings.load({"SCOPE": "staging", "DATABASE_URL": "postgresql://env/db"})
    assert config.resolved_database_url() == "postgresql://env/db"


def test_a_socket_directory_host_becomes_a_socket_url(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)
    (tmp_path / "local_config.json").write_text(
        json.dumps({"database": {"db_user": "postgres", "db_host": "/run/pg", "db_name": "x"}})
    )
    url = settings.load({"SCOPE": "local"}).resolved_database_url()
    assert url == "postgresql+psycopg2://postgres@:5432/x?host=%2Frun%2Fpg"


def test_a_missing_scope_file_is_a_clear_settings_error(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)
    with pytest.raises(settings.SettingsError, match=r"nope_config\.json"):
        settings.load({"SCOPE": "nope"}).resolved_database_url()


def test_scope_names_cannot_walk_out_of_the_project():
    with pytest.raises(settings.SettingsError):
        settings.scope_file("../etc/passwd")


def test_secrets_never_show_in_the_settings_repr():
    config = settings.load({"DATABASE_URL": "postgresql://u:pw@h/d", "ECOMM_API_SECRET": "shh"})
    assert "pw" not in repr(config)
    assert "shh" not in repr(config)


@mock_aws
def test_in_the_cloud_the_database_comes_from_an_rds_secret(monkeypatch):
    # Given an RDS-style secret in Secrets Manager
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    client.create_secret(
        Name="beer-club/prod/db",
        SecretString=json.dumps(
            {
                "username": "app",
                "password": "pw",
                "host": "proxy.rds",
                "port": 5432,
                "dbname": "clubs",
            }
        ),
    )
    # When settings name it
    config = settings.load({"DATABASE_SECRET_ID": "beer-club/prod/db"})
    # Then the URL is built from it
    assert config.resolved_database_url() == "postgresql+psycopg2://app:pw@proxy.rds:5432/clubs"
