"""functions.yml stands alone: packaged under the evaluation platform's own serverless.yml,
which holds only `service`, `provider` and `functions: ${file(./functions.yml)}`.

(Our own serverless.yml, which includes functions-internal.yml too, is packaged by
tests/smoke/test_local_server.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from sqlalchemy.exc import OperationalError

from repositories import database
from tests.conftest import ROOT

HOST = """\
service: la-estores-hiring-challenge-back-subscription
provider:
  name: aws
  runtime: python3.11
  region: us-west-2
functions: ${file(./functions.yml)}
"""
SOURCES = ("handlers", "domain", "repositories", "common", "adapters")
FILES = ("functions.yml", "requirements.txt", "model_config.json", "openapi.yaml")
API_GATEWAY_TIMEOUT = 29


def functions() -> dict:
    return yaml.safe_load((ROOT / "functions.yml").read_text())


def references(node: object) -> set[str]:
    """The logical ids a CloudFormation template refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text))
            found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


@pytest.fixture(scope="module")
def host_template(tmp_path_factory) -> dict:
    # Given a host directory as the platform lays it out: the repository's code and
    # functions.yml, under its own three-key serverless.yml
    host = tmp_path_factory.mktemp("host")
    for name in SOURCES:
        shutil.copytree(ROOT / name, host / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in FILES:
        shutil.copy(ROOT / name, host / name)
    (host / "serverless.yml").write_text(HOST)
    # When it is packaged, offline, with the repository's pinned Serverless Framework
    result = subprocess.run(
        [str(ROOT / "node_modules" / ".bin" / "serverless"), "package"],
        cwd=host,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    path = host / ".serverless" / "cloudformation-template-update-stack.json"
    return json.loads(path.read_text())


def lambda_functions(template: dict) -> dict:
    return {
        name.removesuffix("LambdaFunction"): res["Properties"]
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::Lambda::Function"
    }


def test_every_variable_of_functions_yml_has_a_default():
    # A ${...} without ", default" cannot resolve under a host that lacks our params.
    lines = (ROOT / "functions.yml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    variables = re.findall(r"\$\{([^}]*)\}", text)
    assert variables
    assert [v for v in variables if "," not in v] == []


def test_functions_yml_packages_under_the_platforms_minimal_host(host_template):
    # Then every function of functions.yml is in the stack, and no billing function
    declared = {name[0].upper() + name[1:] for name in functions()}
    assert set(lambda_functions(host_template)) == declared
    assert not {"BillingRun", "BillingCharge"} & declared
    # And the stack refers to nothing it does not define
    defined = set(host_template["Resources"])
    missing = {r for r in references(host_template) if r not in defined}
    assert {r for r in missing if not r.startswith("AWS::")} == set()


def test_each_function_brings_its_own_timeout_and_memory(host_template):
    deployed = lambda_functions(host_template)
    for name, declared in functions().items():
        properties = deployed[name[0].upper() + name[1:]]
        # Not the host provider's 6 s and 1024 MB: the file's own values
        assert properties["Timeout"] == declared["timeout"]
        assert properties["MemorySize"] == declared["memorySize"]
        # And an API function gives up before API Gateway does (29 s), so it answers itself
        if any("http" in event for event in declared.get("events", [])):
            assert properties["Timeout"] < API_GATEWAY_TIMEOUT, name


def test_the_host_gets_an_open_api_without_keys_or_reserved_concurrency(host_template):
    resources = host_template["Resources"].values()
    methods = [r["Properties"] for r in resources if r["Type"] == "AWS::ApiGateway::Method"]
    routes = {
        (m["HttpMethod"], m["ResourceId"]["Ref"]) for m in methods if m["HttpMethod"] != "OPTIONS"
    }
    # Every route, the starting repository's status route included
    assert ("POST", "ApiGatewayResourceSubscriptionUpdateIdVar") in routes
    declared = [e for f in functions().values() for e in f.get("events", []) if "http" in e]
    assert len(routes) == len(declared)
    # No API key asked, no usage plan, CORS open
    assert not any(m.get("ApiKeyRequired") for m in methods)
    assert not [r for r in resources if r["Type"].startswith("AWS::ApiGateway::UsagePlan")]
    origins = {
        m["Integration"]["IntegrationResponses"][0]["ResponseParameters"][
            "method.response.header.Access-Control-Allow-Origin"
        ]
        for m in methods
        if m["HttpMethod"] == "OPTIONS"
    }
    assert origins == {"'*'"}
    # And no reserved concurrency, which a small account could not give
    assert not any(
        "ReservedConcurrentExecutions" in f for f in lambda_functions(host_template).values()
    )


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ('FATAL:  password authentication failed for user "app"', True),
        ('FATAL:  role "app_clone" does not exist', True),
        ("could not connect to server: Connection refused", False),
        ('FATAL:  database "x" does not exist', False),
    ],
)
def test_only_a_refusal_of_the_credentials_reads_the_secret_again(message, refused):
    import psycopg2

    error = OperationalError("connect", {}, psycopg2.OperationalError(message))
    assert database.refused_credentials(error) is refused
