"""Eligible answers too large for API Gateway, written to S3 and handed out by a presigned URL."""

from __future__ import annotations

import uuid
from datetime import datetime

URL_SECONDS = 900


def publish(bucket: str, body: bytes, at: datetime) -> str:
    """Store `body` (the JSON array) and return a GET URL valid for URL_SECONDS."""
    # Imported here: only this rare path of the eligible function pays for boto3.
    import boto3

    s3 = boto3.client("s3")
    key = f"eligible/{at:%Y/%m/%d/%H%M%S}-{uuid.uuid4().hex}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_SECONDS
    )
