"""GET /docs: Swagger UI and the OpenAPI document, for people reading and trying the API.

Swagger UI's assets are the ones the pinned aws-lambda-powertools wheel ships (it serves
them for its own `enable_swagger`): already a run-time dependency, already in every Lambda
bundle, and read from disk, so the page works offline and costs the package nothing.
No API key is needed to read the page: the calls it makes ("Try it out") go to the API
and need one like any other caller.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi.yaml"
LOCAL_SERVER = "\n  - url: http://localhost:3000\n"


def _swagger_ui() -> Path:
    # Found through the import system, without importing Powertools' event handler package.
    spec = importlib.util.find_spec("aws_lambda_powertools")
    if spec is None or spec.origin is None:
        raise RuntimeError("aws_lambda_powertools is not installed")
    return Path(spec.origin).parent / "event_handler" / "openapi" / "swagger_ui"


ASSETS = {
    "swagger-ui-bundle.js": ("application/javascript; charset=utf-8", "swagger-ui-bundle.min.js"),
    "swagger-ui.css": ("text/css; charset=utf-8", "swagger-ui.min.css"),
}
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

# The page finds its assets and the document relative to its own address, so it works
# at /docs locally and at /<stage>/docs behind API Gateway alike.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Beer-club subscriptions API</title>
  <link rel="stylesheet" id="swagger-css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script>
    const base = location.pathname.replace(/\\/+$/, "") + "/";
    document.getElementById("swagger-css").href = base + "swagger-ui.css";
    const bundle = document.createElement("script");
    bundle.src = base + "swagger-ui-bundle.js";
    bundle.onload = () => {
      window.ui = SwaggerUIBundle({
        url: base + "openapi.yaml",
        dom_id: "#swagger-ui",
        deepLinking: true,
        persistAuthorization: false,
      });
    };
    document.head.appendChild(bundle);
  </script>
</body>
</html>
"""


@lru_cache(maxsize=4)
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def _served_from(event: dict[str, Any]) -> str | None:
    """The API's base address as the caller reached it: scheme, host and stage prefix."""
    host = _header(event, "host")
    if host is None or not _HOST.fullmatch(host):
        return None
    scheme = "https" if _header(event, "x-forwarded-proto") == "https" else "http"
    context = event.get("requestContext")
    full = context.get("path") if isinstance(context, dict) else None
    path = event.get("path")
    prefix = ""
    if isinstance(full, str) and isinstance(path, str) and full.endswith(path):
        prefix = full[: len(full) - len(path)]
    if not re.fullmatch(r"(/[A-Za-z0-9_\-]+)*", prefix):
        prefix = ""
    return f"{scheme}://{host}{prefix}"


def _document(event: dict[str, Any]) -> str:
    text = _read(DOCUMENT)
    base = _served_from(event)
    if base is None:
        return text
    return text.replace(LOCAL_SERVER, f"\n  - url: {base}\n", 1)


def _answer(status: int, content_type: str, body: str, cache: str = "no-cache") -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type, "Cache-Control": cache},
        "body": body,
    }


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        event = {}
    params = event.get("pathParameters")
    name = params.get("file") if isinstance(params, dict) else None
    if name is None:
        return _answer(200, "text/html; charset=utf-8", PAGE)
    if name == "openapi.yaml":
        return _answer(200, "application/yaml; charset=utf-8", _document(event))
    if name not in ASSETS:
        return _answer(
            404,
            "application/json",
            '{"error": {"code": "not_found", "message": "no such documentation file"}}',
        )
    content_type, file = ASSETS[name]
    return _answer(200, content_type, _read(_swagger_ui() / file), "public, max-age=86400")
