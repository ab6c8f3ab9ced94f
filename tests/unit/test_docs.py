"""GET /docs behind API Gateway: the page and the document find their way under a stage."""

from __future__ import annotations

import yaml

from handlers import docs


def event(path: str, file: str | None, host: str, full_path: str, proto: str = "https") -> dict:
    return {
        "path": path,
        "headers": {"Host": host, "X-Forwarded-Proto": proto},
        "pathParameters": {"file": file} if file else None,
        "requestContext": {"path": full_path, "stage": "prod"},
    }


def test_the_document_served_behind_a_stage_names_that_stage_as_its_server():
    # Given API Gateway's event for /prod/docs/openapi.yaml
    host = "abc123.execute-api.eu-west-1.amazonaws.com"
    answer = docs.lambda_handler(
        event("/docs/openapi.yaml", "openapi.yaml", host, "/prod/docs/openapi.yaml"), None
    )
    # When the document is read
    served = yaml.safe_load(answer["body"])
    # Then "Try it out" calls the stage it came from, and the rest is openapi.yaml as is
    assert answer["statusCode"] == 200
    assert served["servers"][0]["url"] == f"https://{host}/prod"
    original = yaml.safe_load(docs.DOCUMENT.read_text())
    assert {**served, "servers": None} == {**original, "servers": None}


def test_a_forged_host_header_does_not_reach_the_document():
    # Given a Host header that is not a host name
    answer = docs.lambda_handler(
        event("/docs/openapi.yaml", "openapi.yaml", "evil.test/<script>", "/docs/openapi.yaml"),
        None,
    )
    # Then the document keeps its own server
    assert "<script>" not in answer["body"]
    assert yaml.safe_load(answer["body"])["servers"][0]["url"] == "http://localhost:3000"


def test_the_page_loads_swagger_ui_relative_to_itself_and_unknown_files_are_404():
    # Given the page and the assets of the pinned Powertools wheel
    page = docs.lambda_handler(event("/docs", None, "h", "/prod/docs"), None)
    bundle = docs.lambda_handler(
        event("/docs/swagger-ui-bundle.js", "swagger-ui-bundle.js", "h", "/p"), None
    )
    other = docs.lambda_handler(event("/docs/x", "../handlers/http.py", "h", "/p"), None)
    # Then the page is HTML that builds its URLs from location.pathname, with no address
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "location.pathname" in page["body"]
    assert "://" not in page["body"]
    assert "SwaggerUIBundle" in bundle["body"]
    # And nothing but the listed files is served
    assert other["statusCode"] == 404
