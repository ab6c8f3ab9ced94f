"""The billing queue adapter: batches of ten, one retry of the entries SQS refused."""

from __future__ import annotations

import json

import pytest

from adapters.billing_queue import QueueSendFailed, SqsBillingQueue
from domain.billing import BillingMessage


class StubSqs:
    """Refuses the entries whose ids are listed, `refusals` times."""

    def __init__(self, refuse: set[str], refusals: int) -> None:
        self.refuse, self.refusals, self.calls = refuse, refusals, []

    def send_message_batch(self, QueueUrl, Entries):
        self.calls.append([e["Id"] for e in Entries])
        failed = []
        if self.refusals:
            self.refusals -= 1
            failed = [{"Id": e["Id"]} for e in Entries if e["Id"] in self.refuse]
        return {"Successful": [], "Failed": failed}


def messages(n: int) -> list[BillingMessage]:
    return [BillingMessage(f"s{i}", "2026-11", f"r{i}") for i in range(n)]


def test_entries_refused_once_are_sent_again_alone():
    # Given SQS refusing two entries once
    sqs = StubSqs({"1", "7"}, refusals=1)
    # When a batch of ten is sent, Then the two are retried, alone
    SqsBillingQueue("url", sqs).send(messages(10))
    assert sqs.calls == [[str(i) for i in range(10)], ["1", "7"]]


def test_entries_refused_twice_fail_the_run():
    # Given SQS refusing an entry every time
    sqs = StubSqs({"3"}, refusals=5)
    # When sent, Then the run fails loudly (EventBridge retries it; the ledger dedupes)
    with pytest.raises(QueueSendFailed, match="1 billing message"):
        SqsBillingQueue("url", sqs).send(messages(5))


def test_a_batch_holds_at_most_ten_messages_as_json():
    # Given eleven messages, When sent as one batch, Then it is refused before SQS
    sqs = StubSqs(set(), 0)
    with pytest.raises(ValueError, match="at most 10"):
        SqsBillingQueue("url", sqs).send(messages(11))
    # And a valid batch carries each message as JSON
    captured = {}
    sqs.send_message_batch = lambda QueueUrl, Entries: captured.update(e=Entries) or {}
    SqsBillingQueue("url", sqs).send(messages(1))
    assert json.loads(captured["e"][0]["MessageBody"]) == {
        "subscription_id": "s0",
        "period": "2026-11",
        "request_id": "r0",
        "step": "charge",
        "reason": "",
    }
