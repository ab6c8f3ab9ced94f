"""The documented cloud setup: RDS Proxy's endpoint as configuration, the credentials from
an RDS-managed secret (`rds!...`: user name and password only)."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from common import settings


@mock_aws
def test_an_rds_managed_secret_with_the_proxy_endpoint_as_configuration(monkeypatch):
    # Given a secret as RDS manages it: user name and password, nothing else
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = client.create_secret(
        Name="rds!db-0123456789abcdef",
        SecretString=json.dumps({"username": "app", "password": "pw"}),
    )["ARN"]
    # When the stage names it by ARN, with the proxy's endpoint, port and database
    config = settings.load(
        {
            "DATABASE_SECRET_ID": arn,
            "DATABASE_HOST": "beer-club-prod.proxy-abc.eu-west-1.rds.amazonaws.com",
            "DATABASE_PORT": "5432",
            "DATABASE_NAME": "clubs",
        }
    )
    # Then the functions connect to the proxy with the secret's credentials
    assert config.resolved_database_url() == (
        "postgresql+psycopg2://app:pw@beer-club-prod.proxy-abc.eu-west-1.rds.amazonaws.com"
        ":5432/clubs"
    )


@mock_aws
def test_the_configured_endpoint_wins_over_the_host_in_a_team_managed_secret(monkeypatch):
    # Given a team-managed secret whose host is the instance (what rotation connects to)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name="beer-club/prod/database",
        SecretString=json.dumps(
            {"username": "app", "password": "pw", "host": "db.instance", "dbname": "clubs"}
        ),
    )
    # When DATABASE_HOST names the proxy
    config = settings.load(
        {"DATABASE_SECRET_ID": "beer-club/prod/database", "DATABASE_HOST": "the.proxy"}
    )
    # Then the proxy is used, with the secret's port default and database
    assert config.resolved_database_url() == "postgresql+psycopg2://app:pw@the.proxy:5432/clubs"
