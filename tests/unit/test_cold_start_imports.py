"""Cold start: heavy modules are imported only by the functions that use them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("boto3", "botocore.client", "requests", "matplotlib")


def imported_after(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("handler", ["eligible", "subscribe", "status"])
def test_handlers_that_call_no_one_import_neither_boto3_nor_an_http_client(handler):
    # When a fresh process imports the handler
    modules = imported_after(f"handlers.{handler}")
    # Then none of the heavy clients came with it
    assert not {m for m in HEAVY if m in modules}


def test_the_charge_handler_imports_its_http_client_but_not_boto3():
    # When a fresh process imports the charge handler
    modules = imported_after("handlers.charge")
    # Then it has requests (it calls the platform) and boto3 waits for a cloud secret
    assert "requests" in modules
    assert "boto3" not in modules
    assert "botocore.client" not in modules
