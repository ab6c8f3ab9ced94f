"""Swagger UI at /docs, in a real headless Chromium: what a frontend developer sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import requests
import yaml

from tests.smoke.conftest import BILLING_KEY, ROOT

pytestmark = pytest.mark.smoke

# The documentation's picture is rewritten only when asked (`make swagger-screenshot`):
# a PNG differs byte for byte on every run, and `make test` left the work tree changed.
SCREENSHOT = ROOT / "docs" / "swagger-ui.png"


def screenshot_path(tmp_path):
    return SCREENSHOT if os.environ.get("UPDATE_SWAGGER_SCREENSHOT") else tmp_path / "ui.png"


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI must run the Swagger UI test: .ci/run installs chromium with apt-get")
    pytest.skip(
        "Chromium is not installed: run `apt-get install chromium` (Debian's package) to run "
        "the Swagger UI test; CI installs it and always runs it"
    )


def test_docs_page_and_document_need_no_api_key_and_load_nothing_from_outside(local_server):
    # Given the server enforcing API keys
    base = local_server["base"]
    # When the docs page, its assets and the document are fetched without a key
    page = requests.get(f"{base}/docs", timeout=30)
    document = requests.get(f"{base}/docs/openapi.yaml", timeout=30)
    bundle = requests.get(f"{base}/docs/swagger-ui-bundle.js", timeout=30)
    missing = requests.get(f"{base}/docs/secrets.txt", timeout=30)
    # Then they are served, from this server only
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "http" not in page.text.replace("http-equiv", "")
    assert bundle.status_code == 200
    assert "SwaggerUIBundle" in bundle.text
    assert missing.status_code == 404
    # And the document is openapi.yaml, its server being the address it was served from
    served = yaml.safe_load(document.text)
    original = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert served["servers"][0]["url"] == base
    assert {**served, "servers": None} == {**original, "servers": None}


def test_swagger_ui_lists_every_endpoint_and_tries_eligible_in_headless_chromium(
    local_server, tmp_path
):
    browser = chromium()
    picture = screenshot_path(tmp_path)
    # Given the local server and Debian's Chromium driven by playwright-core
    # When the docs are opened, the billing key entered through "Authorize", and
    # GET /subscription/eligible tried out
    result = subprocess.run(
        [
            "node",
            str(ROOT / "tests" / "smoke" / "swagger_ui.cjs"),
            local_server["base"],
            BILLING_KEY,
            str(picture),
        ],
        # Chromium's own files (dconf, caches) go to the test's folder, not the work tree.
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={
            **os.environ,
            "CHROMIUM": browser,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "GSETTINGS_BACKEND": "memory",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # Then every operation of the document is listed
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    expected = sorted(
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    )
    assert sorted((o["method"], o["path"]) for o in seen["operations"]) == expected
    # And the call went to this server and answered the eligible ids
    tried = seen["tryItOut"]
    assert tried["requestUrl"].startswith(f"{local_server['base']}/subscription/eligible")
    assert tried["status"] == "200", tried
    ids = json.loads(tried["body"])
    assert isinstance(ids, list)
    assert all(isinstance(i, str) for i in ids)
    # And nothing was fetched from outside (the page works offline), and a screenshot is kept
    assert seen["external"] == []
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size > 10_000
