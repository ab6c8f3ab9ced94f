"""Promo announcements: the scheduled announcer -> SQS -> the worker -> the CRM's SNS topic
(moto), and locally a recorded file. Real PostgreSQL, injected clock."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from adapters import promo_notifier
from common import settings
from domain import promo_notifications
from domain.promo_model import Announcement
from handlers import promos_announce, promos_notify
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from tests import promo_builders as pb
from tests.conftest import NOW
from tests.events import LambdaContext

PORTO = (41.1579, -8.6291)


class ListQueue:
    def flush(self) -> None:
        pass

    def __init__(self) -> None:
        self.messages: list[Announcement] = []

    def send(self, messages) -> None:
        assert len(messages) <= 10
        self.messages.extend(messages)

    def customers(self, promo_id: int) -> list[str]:
        return sorted(c for m in self.messages if m.promo_id == promo_id for c in m.customer_ids)


class ListNotifier:
    def __init__(self, fail_on: str | None = None) -> None:
        self.sent: list[tuple[int, str]] = []
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def send(self, notification) -> str:
        if notification.customer_id == self.fail_on:
            self.fail_on = None
            raise ConnectionError("topic unavailable")
        with self._lock:
            self.sent.append((notification.promo_id, notification.customer_id))
            return f"m-{len(self.sent)}"


@pytest.fixture
def city(clean_db, now):
    """A store in Porto, customers around it, and a 5 km promo inserted by SQL."""
    db = clean_db
    store = pb.store(db, *PORTO)
    inside = sorted(
        [pb.customer(db, pb.north_of(PORTO[0], km), PORTO[1]) for km in (0, 1.5, 4.9, 5.0)]
    )
    pb.customer(db, pb.north_of(PORTO[0], 5.2), PORTO[1])  # too far
    pb.customer(db, *PORTO, segments=("wine",))  # another segment
    return {"db": db, "store": store, "inside": inside}


def announce(queue, at):
    return promo_notifications.announce(SqlAlchemyUnitOfWork(), queue, at)


def test_a_promo_inserted_by_sql_with_a_past_start_is_announced_to_its_audience(city):
    # Given a promo inserted by SQL that started an hour ago
    promo = pb.promo(city["db"], city["store"], NOW - timedelta(hours=1))
    queue = ListQueue()
    # When the announcer runs
    done = announce(queue, NOW)
    # Then the customers in its segments and radius (5 km included) are queued, once
    assert [(a.promo_id, a.customers) for a in done] == [(promo, 4)]
    assert queue.customers(promo) == city["inside"]
    # And a second run announces nothing again
    assert announce(ListQueue(), NOW + timedelta(minutes=1)) == []
    assert pb.rows(city["db"], "SELECT announced_at FROM promo") == [{"announced_at": NOW}]


def test_a_promo_starting_the_minute_it_is_inserted_is_announced_the_next_run(city):
    promo = pb.promo(city["db"], city["store"], NOW + timedelta(seconds=30))
    assert announce(ListQueue(), NOW) == []
    queue = ListQueue()
    assert [a.promo_id for a in announce(queue, NOW + timedelta(minutes=1))] == [promo]


def test_a_promo_cancelled_or_ended_before_its_announcement_is_not_announced(city):
    db = city["db"]
    cancelled = pb.promo(db, city["store"], NOW - timedelta(minutes=1))
    pb.promo(db, city["store"], NOW - timedelta(hours=2), NOW - timedelta(minutes=1))
    with db.begin() as conn:
        conn.exec_driver_sql(f"UPDATE promo SET cancelled_at = now() WHERE id = {cancelled}")
    queue = ListQueue()
    assert announce(queue, NOW) == []
    assert queue.messages == []


def test_an_audience_is_split_into_messages_of_at_most_200_customers(clean_db, now):
    db = clean_db
    store = pb.store(db, *PORTO)
    with db.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO customer_profile (customer_id, latitude, longitude, segments)"
            f" SELECT 'bulk-' || n, {PORTO[0]}, {PORTO[1]}, '{{beer-lovers}}'"
            " FROM generate_series(1, 2345) AS n"
        )
    promo = pb.promo(db, store, NOW - timedelta(minutes=1))
    queue = ListQueue()
    assert announce(queue, NOW)[0].customers == 2345
    assert max(len(m.customer_ids) for m in queue.messages) == 200
    assert len(queue.customers(promo)) == len(set(queue.customers(promo))) == 2345


def test_duplicate_notification_messages_send_once(city):
    promo = pb.promo(city["db"], city["store"], NOW - timedelta(minutes=1))
    queue = ListQueue()
    announce(queue, NOW)
    notifier = ListNotifier()
    # When every message is delivered twice, two of them at the same time
    deliveries = queue.messages * 2
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda m: promo_notifications.deliver(
                    SqlAlchemyUnitOfWork(), notifier, m, lambda: NOW, 300
                ),
                deliveries,
            )
        )
    # Then each customer was sent one notification, and one row records it
    assert sorted(c for _, c in notifier.sent) == city["inside"]
    rows = pb.rows(city["db"], "SELECT customer_id, sent_at FROM promo_notification")
    assert sorted(r["customer_id"] for r in rows) == city["inside"]
    assert {r["sent_at"] for r in rows} == {NOW}
    assert {p for p, _ in notifier.sent} == {promo}


def test_a_failed_send_is_retried_by_the_redelivery_and_sent_once(city):
    pb.promo(city["db"], city["store"], NOW - timedelta(minutes=1))
    queue = ListQueue()
    announce(queue, NOW)
    (message,) = queue.messages
    notifier = ListNotifier(fail_on=city["inside"][2])
    with pytest.raises(ConnectionError):
        promo_notifications.deliver(SqlAlchemyUnitOfWork(), notifier, message, lambda: NOW, 300)
    promo_notifications.deliver(SqlAlchemyUnitOfWork(), notifier, message, lambda: NOW, 300)
    assert sorted(c for _, c in notifier.sent) == city["inside"]


def test_a_promo_cancelled_after_it_was_queued_sends_nothing(city):
    promo = pb.promo(city["db"], city["store"], NOW - timedelta(minutes=1))
    queue = ListQueue()
    announce(queue, NOW)
    with city["db"].begin() as conn:
        conn.exec_driver_sql(f"UPDATE promo SET cancelled_at = now() WHERE id = {promo}")
    notifier = ListNotifier()
    result = promo_notifications.deliver(
        SqlAlchemyUnitOfWork(), notifier, queue.messages[0], lambda: NOW, 300
    )
    assert (result.sent, result.promo_running, notifier.sent) == (0, False, [])


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
        sns = boto3.client("sns")
        queue = sqs.create_queue(QueueName="promo-announcements")["QueueUrl"]
        crm = sqs.create_queue(QueueName="crm")["QueueUrl"]
        crm_arn = sqs.get_queue_attributes(QueueUrl=crm, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        topic = sns.create_topic(Name="promo-notifications")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=crm_arn)
        monkeypatch.setenv("PROMO_QUEUE_URL", queue)
        monkeypatch.setenv("PROMO_TOPIC_ARN", topic)
        settings.get.cache_clear()
        promo_notifier.notifier.cache_clear()
        yield {"sqs": sqs, "queue": queue, "crm": crm}
    settings.get.cache_clear()
    promo_notifier.notifier.cache_clear()


def drain(sqs, url) -> list[dict]:
    got = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", []):
        got.extend(batch)
    return got


def sqs_event(messages: list[dict]) -> dict:
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
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:promo-announcements",
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }


def test_schedule_to_sqs_to_worker_to_sns_with_customer_and_promo_attributes(city, aws):
    promo = pb.promo(city["db"], city["store"], NOW - timedelta(minutes=1))
    # When the scheduled announcer runs
    assert promos_announce.lambda_handler({"detail-type": "Scheduled Event"}, LambdaContext()) == {
        "announced": [promo]
    }
    queued = drain(aws["sqs"], aws["queue"])
    # And the worker gets each message twice (SQS delivers at least once)
    event = sqs_event(queued + queued)
    assert promos_notify.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    # Then the CRM's topic got one message per customer, with both as message attributes
    published = [json.loads(m["Body"]) for m in drain(aws["sqs"], aws["crm"])]
    customers = sorted(p["MessageAttributes"]["customer_id"]["Value"] for p in published)
    assert customers == city["inside"]
    assert {p["MessageAttributes"]["promo_id"]["Value"] for p in published} == {str(promo)}
    assert {json.loads(p["Message"])["type"] for p in published} == {"promo-started"}


def test_an_unreadable_queue_message_is_dropped_not_retried(city, aws):
    messages = [
        {"MessageId": "1", "ReceiptHandle": "r", "Body": "not json", "MD5OfBody": "x"},
        {"MessageId": "2", "ReceiptHandle": "r", "Body": '{"promo_id": "1"}', "MD5OfBody": "x"},
    ]
    assert promos_notify.lambda_handler(sqs_event(messages), LambdaContext()) == {
        "batchItemFailures": []
    }


def test_locally_notifications_are_recorded_in_a_file(city, monkeypatch, tmp_path):
    # Given no queue and no topic (make run): the announcer delivers inline, to a file
    out = tmp_path / "notifications.jsonl"
    monkeypatch.setenv("PROMO_NOTIFICATIONS_FILE", str(out))
    settings.get.cache_clear()
    promo_notifier.notifier.cache_clear()
    try:
        promo = pb.promo(city["db"], city["store"], NOW - timedelta(minutes=1))
        promos_announce.run()
        promos_announce.run()
    finally:
        settings.get.cache_clear()
        promo_notifier.notifier.cache_clear()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["customer_id"] for line in lines) == city["inside"]
    assert {line["promo_id"] for line in lines} == {promo}


def test_a_queue_failure_leaves_the_promo_to_the_next_run(city):
    class FailingQueue(ListQueue):
        def flush(self) -> None:
            raise RuntimeError("SendMessageBatch failed")

    promo = pb.promo(city["db"], city["store"], NOW - timedelta(minutes=1))
    with pytest.raises(RuntimeError):
        announce(FailingQueue(), NOW)
    assert pb.rows(city["db"], "SELECT announced_at FROM promo") == [{"announced_at": None}]
    queue = ListQueue()
    assert [a.promo_id for a in announce(queue, NOW + timedelta(minutes=1))] == [promo]
    assert queue.customers(promo) == city["inside"]
