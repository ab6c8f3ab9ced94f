"""GET /subscription/eligible when the whole list would not fit in an API Gateway response."""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from moto import mock_aws

from common import settings
from handlers import eligible
from tests import builders
from tests.events import api_event, invoke

BUCKET = "beer-club-eligible-exports"


def get(query=None):
    return invoke(eligible.lambda_handler, api_event("GET", "/subscription/eligible", query=query))


@pytest.fixture
def small_limit(monkeypatch):
    """A response limit of 1,000 bytes, so 30 ids are 'too large' (as 408,000 are at 6 MB)."""
    monkeypatch.setenv("ELIGIBLE_MAX_RESPONSE_BYTES", "1000")
    monkeypatch.delenv("ELIGIBLE_EXPORT_BUCKET", raising=False)
    settings.get.cache_clear()
    yield
    monkeypatch.undo()
    settings.get.cache_clear()


@pytest.fixture
def export_bucket(small_limit, monkeypatch):
    monkeypatch.setenv("ELIGIBLE_EXPORT_BUCKET", BUCKET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.get.cache_clear()
    with mock_aws():
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield


def many_eligible(db, n=30) -> list[str]:
    club = builders.club(db)
    return sorted(builders.subscription(db, club) for _ in range(n))


def test_a_whole_list_too_large_without_a_bucket_answers_413_pointing_to_pagination(
    db, now, small_limit
):
    # Given more eligible ids than one response may carry, and no export bucket
    ids = many_eligible(db)
    # When the whole list is asked for
    status, body, _ = get()
    # Then a 413 envelope tells the client how to page
    assert status == 413
    assert body["error"]["code"] == "response_too_large"
    assert "limit=10000" in body["error"]["message"]
    assert "after=" in body["error"]["message"]
    # And the pages it points to still work
    status, page, headers = get({"limit": "20"})
    assert status == 200
    assert page == ids[:20]
    assert headers["X-Next-After"] == ids[19]


def test_a_whole_list_that_fits_is_still_answered_inline(db, now, small_limit):
    # Given a few eligible ids, well under the limit
    ids = many_eligible(db, 5)
    # When the whole list is asked for
    status, body, _ = get()
    # Then it comes back as before
    assert status == 200
    assert body == ids


def test_a_whole_list_too_large_with_a_bucket_answers_303_to_the_full_list_in_s3(
    db, now, export_bucket
):
    # Given more eligible ids than one response may carry, and an export bucket
    ids = many_eligible(db)
    # When the whole list is asked for
    status, body, headers = get()
    # Then the answer is a redirect to a presigned URL of an S3 object holding the whole list
    assert status == 303
    assert headers["Location"] == body["location"]
    assert body["count"] == len(ids)
    assert body["expires_in"] == 900
    assert BUCKET in body["location"]
    assert "Signature" in body["location"] or "X-Amz-Signature" in body["location"]
    s3 = boto3.client("s3", region_name="eu-west-1")
    (stored,) = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    obj = s3.get_object(Bucket=BUCKET, Key=stored["Key"])
    assert obj["ContentType"] == "application/json"
    assert json.loads(obj["Body"].read()) == ids
    # And following the URL (as a client would) gives the list
    assert requests.get(body["location"], timeout=5).json() == ids


def test_limit_accepts_up_to_a_hundred_thousand_and_refuses_more(db, now):
    # Given one eligible subscription
    ids = many_eligible(db, 1)
    # When pages of 10,000, of 100,000 and of 100,001 are asked for
    ok = get({"limit": "10000"})
    assert get({"limit": "100000"})[:2] == (200, ids)
    refused = get({"limit": "100001"})
    # Then the first is served and the second is a clear 400
    assert ok[0] == 200
    assert ok[1] == ids
    assert refused[0] == 400
    assert "limit" in refused[1]["error"]["message"]


def test_a_page_too_large_for_a_response_answers_413_asking_for_a_smaller_limit(
    db, now, small_limit
):
    # Given more eligible ids than one response may carry (a 1,000-byte limit here)
    ids = many_eligible(db)
    # When a page holding all of them is asked for
    status, body, _ = get({"limit": "100"})
    # Then it is refused with a clear message, and a smaller page is served
    assert status == 413
    assert body["error"]["code"] == "response_too_large"
    assert "smaller limit" in body["error"]["message"]
    assert get({"limit": "10"})[1] == ids[:10]
