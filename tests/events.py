"""The one builder of API Gateway REST proxy events used by every handler test."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

_UNSET = object()


def api_event(
    method: str,
    resource: str,
    path_parameters: dict[str, str] | None = None,
    body: Any = None,
    query: dict[str, str] | None = None,
    raw_body: str | None | object = _UNSET,
    base64_body: bool = False,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`body` is JSON-encoded; `raw_body` is sent as is (malformed input tests)."""
    path = resource
    for name, value in (path_parameters or {}).items():
        path = path.replace("{" + name + "}", value)
    text = json.dumps(body) if raw_body is _UNSET and body is not None else raw_body
    if text is _UNSET:
        text = None
    if base64_body and text is not None:
        text = base64.b64encode(text.encode()).decode()
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": ({k: [v] for k, v in query.items()} if query else None),
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": request_id,
            "accountId": "123456789012",
            "apiId": "testapi",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:test-function"
    aws_request_id: str = "test-request"


def invoke(handler, event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    """Call a Lambda handler in-process; returns (status, parsed JSON body, headers)."""
    response = handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"]), response["headers"]
