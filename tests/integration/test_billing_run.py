"""The billing run end to end: EventBridge schedule -> producer -> SQS -> worker -> ledger.

AWS is moto's (SQS with a dead-letter queue, EventBridge); the platform is the fake
e-commerce server; the database is real PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws
from sqlalchemy import text

from common import settings
from domain import billing
from handlers import billing_charge, billing_run
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from tests import builders, platforms
from tests.events import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 1, 6)


@pytest.fixture
def platform(monkeypatch, database_url):
    with platforms.running(monkeypatch) as running:
        yield running


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        sqs = boto3.client("sqs")
        dlq = sqs.create_queue(QueueName="billing-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        queue = sqs.create_queue(
            QueueName="billing",
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
            },
        )["QueueUrl"]
        monkeypatch.setenv("BILLING_QUEUE_URL", queue)
        settings.get.cache_clear()
        yield {"sqs": sqs, "queue": queue, "dlq": dlq}
    settings.get.cache_clear()


def schedule_event() -> dict:
    """What EventBridge sends the producer when the rule fires."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-01T06:00:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/billing-run"],
        "detail": {},
    }


def receive(aws, queue: str = "queue") -> list[dict]:
    messages = []
    while True:
        got = (
            aws["sqs"]
            .receive_message(QueueUrl=aws[queue], MaxNumberOfMessages=10, AttributeNames=["All"])
            .get("Messages", [])
        )
        if not got:
            return messages
        messages.extend(got)
        if queue != "queue":
            return messages


def sqs_event(messages: list[dict]) -> dict:
    """The event Lambda's SQS event source gives the worker."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:billing",
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }


def deliver(aws, messages: list[dict]) -> dict:
    """Run the worker on up to ten messages, deleting the processed ones as Lambda does.

    A failed message becomes visible again at once, as if its visibility timeout had
    passed, so the test does not sleep.
    """
    response = billing_charge.lambda_handler(sqs_event(messages), LambdaContext())
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] in failed:
            aws["sqs"].change_message_visibility(
                QueueUrl=aws["queue"], ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=m["ReceiptHandle"])
    return response


def members(db, count: int, club: int | None = None) -> list[str]:
    club = club or builders.club(db, sku=555)
    return [builders.subscription(db, club, sub_id=f"sub-{n:03d}") for n in range(count)]


def test_the_schedule_rule_of_serverless_yml_is_a_valid_daily_eventbridge_rule(aws):
    # Given the billing run's schedule as functions-internal.yml declares it
    functions = yaml.safe_load((ROOT / "functions-internal.yml").read_text())
    schedule = functions["billingRun"]["events"][0]["schedule"]
    # When EventBridge creates the rule
    events = boto3.client("events")
    events.put_rule(Name="billing-run", ScheduleExpression=schedule["rate"], State="ENABLED")
    rule = events.describe_rule(Name="billing-run")
    # Then it is enabled and fires from 06:00 UTC, every 15 minutes until 09:45 (the
    # first tick starts the day's run, the later ones resume it if it paused)
    assert rule["State"] == "ENABLED"
    assert rule["ScheduleExpression"] == "cron(0/15 6-9 * * ? *)"
    # And the worker reads the queue in batches of ten, reporting partial failures
    sqs_source = functions["billingCharge"]["events"][0]["sqs"]
    assert (sqs_source["batchSize"], sqs_source["functionResponseType"]) == (
        10,
        "ReportBatchItemFailures",
    )


def test_a_scheduled_run_charges_every_due_subscription_exactly_once(db, now, aws, platform):
    # Given 23 eligible members, one already charged this month, and one cancelled member
    now(NOW)
    subs = members(db, 23)
    cancelled = builders.subscription(db, builders.club(db), status_id=2)
    builders_charge_succeeded(db, subs[0], "2026-11")
    # When EventBridge fires the producer
    counts = billing_run.lambda_handler(schedule_event(), LambdaContext())
    # Then one message per due subscription was queued, with deterministic request ids
    messages = receive(aws)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert counts == {"status": "finished", "queued": 22, "succeeded": 1}
    assert sorted(b["subscription_id"] for b in bodies) == subs[1:]
    assert cancelled not in {b["subscription_id"] for b in bodies}
    assert all(
        b["request_id"] == billing.request_id_for(b["subscription_id"], "2026-11") for b in bodies
    )
    # When the worker processes them, ten at a time, each message delivered twice
    for start in range(0, len(messages), 10):
        batch = messages[start : start + 10]
        assert deliver(aws, batch) == {"batchItemFailures": []}
        assert deliver(aws, batch) == {"batchItemFailures": []}
    # Then every due subscription has exactly one order, under its deterministic id
    assert len(platform.orders) == 22
    assert {o["request_id"] for o in platform.orders} == {b["request_id"] for b in bodies}
    assert builders.count(db, "charge", "state = 'succeeded'") == 23
    # And a second run the same day queues nothing: the day's run is finished
    assert billing_run.lambda_handler(schedule_event(), LambdaContext()) == {
        "status": "already finished"
    }
    assert receive(aws) == []


def test_platform_failures_are_reported_as_batch_item_failures_and_end_in_the_dlq(
    db, now, aws, platform
):
    # Given three due members and a platform failing (5xx) for the first two calls
    now(NOW)
    subs = members(db, 3)
    billing_run.lambda_handler(schedule_event(), LambdaContext())
    platform.set_mode("fail", times=2)
    # When the worker gets the batch
    messages = sorted(receive(aws), key=lambda m: json.loads(m["Body"])["subscription_id"])
    response = deliver(aws, messages)
    # Then only the two failed messages are reported, and the third was charged
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        m["MessageId"] for m in messages[:2]
    )
    assert len(platform.orders) == 1
    # When the platform keeps failing on the redelivery
    platform.set_mode("fail")
    again = receive(aws)
    assert len(again) == 2
    assert len(deliver(aws, again)["batchItemFailures"]) == 2
    # Then, past maxReceiveCount, SQS moves them to the dead-letter queue
    assert receive(aws) == []
    dead = receive(aws, "dlq") + receive(aws, "dlq")
    assert sorted(json.loads(m["Body"])["subscription_id"] for m in dead) == subs[:2]
    # And the ledger keeps their periods chargeable for the next run
    assert builders.count(db, "charge", "state = 'unknown'") == 2


def test_a_refused_payment_is_processed_not_redelivered(db, now, aws, platform):
    # Given a due member whose payment the platform declines (422)
    now(NOW)
    (sub,) = members(db, 1)
    billing_run.lambda_handler(schedule_event(), LambdaContext())
    platform.set_mode("reject", times=1)
    # When the worker gets it
    response = deliver(aws, receive(aws))
    # Then it is processed (later runs retry it), recorded failed
    assert response == {"batchItemFailures": []}
    assert receive(aws) == []
    assert builders.count(db, "charge", "subscription_id = :s AND state = 'failed'", s=sub) == 1


def test_a_malformed_message_is_a_batch_item_failure(db, now, aws, platform):
    # Given a message that is not a billing message
    aws["sqs"].send_message(QueueUrl=aws["queue"], MessageBody='{"nope": 1}')
    # When the worker gets it, Then it is reported failed (SQS will dead-letter it)
    messages = receive(aws)
    assert deliver(aws, messages) == {
        "batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]
    }


def test_the_producer_streams_with_a_server_side_cursor_in_chunks(db, now):
    # Given 7 eligible members
    now(NOW)
    members(db, 7)
    # When the eligible set is read in chunks of 3
    uow = SqlAlchemyUnitOfWork()
    chunks, open_cursors = [], []
    with uow:
        for chunk in uow.billing.eligible(NOW, [1, 2], 3):
            chunks.append(len(chunk))
            open_cursors.append(uow.connection.scalar(text("SELECT count(*) FROM pg_cursors")))
    # Then rows came 3 at a time from a cursor PostgreSQL held open meanwhile
    assert chunks == [3, 3, 1]
    assert open_cursors[0] == 1


def builders_charge_succeeded(db, sub: str, period: str) -> None:
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO charge (subscription_id, period, request_id, state, attempts,"
                " created_at, updated_at, last_attempt_at)"
                " VALUES (:s, :p, 'earlier', 'succeeded', 1, :n, :n, :n)"
            ),
            {"s": sub, "p": period, "n": NOW},
        )


class ShrinkingContext(LambdaContext):
    """A Lambda context whose time left drops below one record's margin after `records`."""

    def __init__(self, records: int) -> None:
        self.looks = 0
        self.records = records

    def get_remaining_time_in_millis(self) -> int:
        self.looks += 1
        return 100_000 if self.looks <= self.records else 20_000


def test_the_worker_hands_back_the_records_it_has_no_time_for(db, now, aws, platform):
    # Given a batch of ten due members, and time for only three records in the invocation
    now(NOW)
    subs = members(db, 10)
    billing_run.lambda_handler(schedule_event(), LambdaContext())
    messages = sorted(receive(aws), key=lambda m: json.loads(m["Body"])["subscription_id"])
    assert len(messages) == 10
    # When the worker gets the batch
    response = billing_charge.lambda_handler(sqs_event(messages), ShrinkingContext(3))
    # Then the first three were charged, the other seven handed back untouched
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        m["MessageId"] for m in messages[3:]
    )
    assert len(platform.orders) == 3
    assert builders.count(db, "charge", "subscription_id IN :s", s=tuple(subs[:3])) == 3
    assert builders.count(db, "charge") == 3
