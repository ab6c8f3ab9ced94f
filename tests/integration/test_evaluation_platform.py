"""As the evaluation platform meets the service: its database named only by its secret
(moto), its migration run as `alembic -x scope=build upgrade head`, then every endpoint
called through that database. And a rotation of the secret heals without a new container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import boto3
import pytest
from alembic.config import CommandLine, Config
from moto import mock_aws
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapters import secrets
from common import settings
from handlers import charge, docs, eligible, status, subscribe, webhooks
from repositories import database
from scripts import devdb
from tests import builders, platforms
from tests.conftest import ROOT
from tests.events import api_event, invoke
from tests.webhook_events import WEBHOOK_SECRET, new_event, signed_event

REGION = "us-west-2"


def platform_secret(url: str, **override: object) -> dict:
    """The challenge's secret format (the keys of model_config.json's `database`)."""
    parts = make_url(url)
    return {
        "database_type": "postgresql",
        "driver": "psycopg2",
        "db_user": parts.username,
        "db_password": parts.password or "",
        "db_host": parts.host or parts.query["host"],
        "db_port": parts.port or 5432,
        "db_name": parts.database,
        **override,
    }


def alembic_cli(*argv: str) -> None:
    """`alembic <argv>` as the command line parses it, in this process (moto is in-process)."""
    cli = CommandLine()
    options = cli.parser.parse_args(["-c", str(ROOT / "alembic.ini"), *argv])
    config = Config(file_=str(ROOT / "alembic.ini"), cmd_opts=options)
    config.attributes["configure_logger"] = False
    cli.run_cmd(config, options)


def forget_everything() -> None:
    settings.get.cache_clear()
    database.reset()
    secrets.forget_database_secrets()
    charge.platform.cache_clear()


@pytest.fixture
def platform_db(admin_url, monkeypatch):
    """A fresh, empty database that only the platform's secret names; a Lambda in us-west-2."""
    name = f"beerclub_platform_{uuid.uuid4().hex[:8]}"
    url = devdb.ensure_database(admin_url, name)
    for variable in ("DATABASE_URL", "DATABASE_SECRET_ID", "DATABASE_SECRET_NAME", "SCOPE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "beer-club-eval-status")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    forget_everything()
    engine = create_engine(url)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(
            Name=settings.PLATFORM_SECRET_NAME, SecretString=json.dumps(platform_secret(url))
        )
        yield {"url": url, "engine": engine, "secrets": client}
    engine.dispose()
    forget_everything()
    devdb.drop_database(admin_url, name)


def test_with_only_the_platform_secret_the_build_migration_and_every_endpoint_work(
    platform_db, now, monkeypatch
):
    db = platform_db["engine"]
    # Given an empty database named only by the secret
    # When the platform's pipeline migrates it
    alembic_cli("-x", "scope=build", "upgrade", "head")
    # Then the schema is there, in that database
    with db.connect() as conn:
        assert conn.scalar(text("SELECT to_regclass('subscription_status_history')")) is not None
    # And every endpoint answers through it
    club = builders.club(db, sku=7001)
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    with platforms.running(monkeypatch):
        forget_everything()
        customer = builders.unique_customer()
        answered, body, _ = invoke(
            subscribe.lambda_handler,
            api_event("POST", "/club/{id}/subscribe", {"id": str(club)}, {"customer_id": customer}),
        )
        assert answered == 201, body
        sub = body["id"]
        answered, ids, _ = invoke(
            eligible.lambda_handler, api_event("GET", "/subscription/eligible")
        )
        assert (answered, ids) == (200, [sub])
        request_id = f"eval-{uuid.uuid4().hex[:8]}"
        charged, body, _ = invoke(
            charge.lambda_handler,
            api_event(
                "POST",
                "/subscription/{id}/charge/{request_id}",
                {"id": sub, "request_id": request_id},
            ),
        )
        assert charged == 201, body
    event = new_event("payment-outcome", request_id=request_id, outcome="success")
    answered, body, _ = invoke(webhooks.lambda_handler, signed_event(event, now.value()))
    assert answered == 200, body
    answered, body, _ = invoke(
        status.lambda_handler,
        api_event("POST", "/subscription/{id}/status", {"id": sub}, {"status_id": 3}),
    )
    assert answered == 200, body
    answered, body, _ = invoke(
        status.lambda_handler,
        api_event(
            "POST",
            "/subscription/update/{id}",
            {"id": sub},
            {
                "subscription_id": sub,
                "status_id": 1,
                "effect_date": "2026-11-21T12:30:00.000000",
                "interval": None,
            },
        ),
    )
    assert answered == 200, body
    page = docs.lambda_handler(api_event("GET", "/docs"), None)
    assert page["statusCode"] == 200
    # And it all landed in the platform's database
    assert builders.count(db, "subscription", "id = :id", id=sub) == 1
    assert builders.count(db, "charge", "subscription_id = :id", id=sub) == 1
    history = builders.history(db, sub)
    assert sorted(row[0] for row in history) == [1, 1, 3]
    assert (1, datetime(2026, 11, 21, 12, 30), None) in history


def test_a_rotation_of_the_secret_heals_after_one_refusal(platform_db, now, monkeypatch):
    db, client = platform_db["engine"], platform_db["secrets"]
    alembic_cli("-x", "scope=build", "upgrade", "head")
    suffix = uuid.uuid4().hex[:8]
    old_user, new_user = f"eval_app_{suffix}_a", f"eval_app_{suffix}_b"
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for user in (old_user, new_user):
            conn.execute(text(f'CREATE ROLE "{user}" LOGIN SUPERUSER'))

    def secret_names(user: str) -> None:
        value = platform_secret(platform_db["url"], db_user=user)
        client.put_secret_value(
            SecretId=settings.PLATFORM_SECRET_NAME, SecretString=json.dumps(value)
        )

    def ask() -> tuple[int, object]:
        event = api_event("GET", "/subscription/eligible")
        answered, body, _ = invoke(eligible.lambda_handler, event)
        return answered, body

    try:
        # Given a warm container connected as the first user of the secret
        secret_names(old_user)
        forget_everything()
        assert ask() == (200, [])
        # When the database stops accepting that user before the secret names the next one
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :u"),
                {"u": old_user},
            )
            conn.execute(text(f'DROP ROLE "{old_user}"'))
        # Then the request is a 503 (the secret was read again, and had not changed yet)
        answered, body = ask()
        assert (answered, body["error"]["code"]) == (503, "database_unavailable")
        # And once the secret names the new user, the same container heals on its own
        secret_names(new_user)
        assert ask() == (200, [])
        assert make_url(database.engine().url).username == new_user
    finally:
        database.reset()
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :u"),
                {"u": new_user},
            )
            conn.execute(text(f'DROP ROLE IF EXISTS "{old_user}"'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{new_user}"'))


def test_the_build_migration_without_aws_names_the_secret_it_could_not_read(tmp_path):
    # Given a shell with no AWS region or credentials (and a DATABASE_URL, which build ignores)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        DATABASE_URL="postgresql+psycopg2://nobody@localhost:1/none",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    # When the platform's migration command runs
    done = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), "-x", "scope=build", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it stops, naming the secret (not a build_config.json), and touched no database
    assert done.returncode != 0
    assert f"AWS cannot be asked for {settings.PLATFORM_SECRET_NAME}" in done.stderr
    assert "build_config.json" not in done.stderr
