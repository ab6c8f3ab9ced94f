"""The exactly-once matrix: every first outcome of a charge against every second event.

Each cell runs in-process on the real database, through the real handlers (charge
endpoint, webhook endpoint, billing worker) and the domain's reconciliation, against the
fake platform's order book in deduplicating mode (one order per request id), reached
through a fast in-process adapter (no sockets, no sleeping). After the second event, and
again after everything has settled (reconciliation, one more retry, reconciliation), the
invariants are checked:

- at most one paid order per (subscription, period) at the platform;
- the ledger agrees with the platform's orders (a paid ledger row has its paid order; a
  declined, errored or abandoned row has none; once settled, paid iff an order is paid);
- no paying customer is cancelled (and nobody is: no retry window closes in a cell).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Engine, text

from domain import billing, errors, reconciliation
from domain.ports import PlatformAnswer
from fake_ecommerce import server as fake
from repositories.unit_of_work import SqlAlchemyUnitOfWork
from tests import builders
from tests.events import api_event, invoke
from tests.webhook_events import new_event, signed_event

FIRST = ("2xx", "402", "401", "429", "5xx", "timeout", "dropped", "unreachable", "crash")
SECOND = (
    "retry same id",
    "retry new id",
    "concurrent charge",
    "billing-run message",
    "success webhook",
    "late failure webhook",
    "stale webhook",
    "duplicate webhook",
    "reconciliation",
)
# Outcomes after which the platform holds the (paid) order.
CREATES_ORDER = frozenset({"2xx", "5xx", "timeout", "dropped", "crash"})
START = datetime(2026, 11, 10, 9)
LATER = START + timedelta(minutes=5)  # past the pending timeout: a crashed attempt is stale
PENDING_TIMEOUT = timedelta(seconds=60)


class Crash(BaseException):
    """The Lambda died after sending: nothing after the call runs."""


class MatrixPlatform:
    """The fake platform's order book, in-process; `script` answers the next calls."""

    def __init__(self, book: fake.FakePlatform) -> None:
        self.book = book
        self.script: list[str] = []
        self.lock = threading.Lock()
        # The cell's customer: the order list reconciliation reads is this cell's (the
        # book holds every cell's orders; each cell is judged on its own).
        self.customer: str | None = None

    def ready(self) -> None:
        pass

    def place_order(self, request_id: str, customer_id: str, sku_id: int) -> PlatformAnswer:
        with self.lock:
            outcome = self.script.pop(0) if self.script else "2xx"
        if outcome in CREATES_ORDER:
            order, created = self.book.create_order(request_id, customer_id, sku_id)
            if order.get("status") == "payment_failed":
                return PlatformAnswer(402, '{"error": "payment failed"}', {"error": "x"}, True)
        if outcome == "2xx":
            body = order if created else {**order, "duplicate": True}
            return PlatformAnswer(201 if created else 200, orjson.dumps(body).decode(), body, True)
        if outcome in ("402", "401", "429"):
            body = {"error": f"HTTP {outcome}"}
            return PlatformAnswer(int(outcome), orjson.dumps(body).decode(), body, True)
        if outcome == "5xx":
            return PlatformAnswer(500, "internal error", None, False)
        if outcome == "timeout":
            raise errors.PlatformTimeout("the platform did not answer")
        if outcome == "dropped":
            raise errors.PlatformUnreachable("the connection dropped")
        if outcome == "unreachable":
            raise errors.PlatformUnreachable("unreachable", sent=False)
        raise Crash

    def find_order(self, request_id: str):
        return self.book.order(request_id)

    def list_orders(self):
        return [o for o in self.book.orders if o["customer_id"] == self.customer]


@dataclass
class Cell:
    first: str
    second: str
    sub: str = ""
    customer: str = ""
    first_id: str = ""
    result: str = "pass"
    detail: str = ""


def _charge(charge_handler, sub: str, request_id: str):
    event = api_event(
        "POST", "/subscription/{id}/charge/{request_id}", {"id": sub, "request_id": request_id}
    )
    try:
        return invoke(charge_handler.lambda_handler, event)
    except Crash:
        return (None, None, None)


def _webhook(webhook_handler, payload: dict, sent_at: datetime):
    return invoke(webhook_handler.lambda_handler, signed_event(payload, sent_at))


class Runner:
    def __init__(self, db: Engine, platform: MatrixPlatform, move_clock, handlers) -> None:
        self.db = db
        self.platform = platform
        self.move = move_clock
        self.charge, self.webhooks, self.worker = handlers
        self.club = builders.club(db, sku=7001)

    def run(self, first: str, second: str) -> Cell:
        cell = Cell(first, second)
        tag = uuid.uuid4().hex[:8]
        cell.customer = f"cust-{tag}"
        self.platform.customer = cell.customer
        self.move(START - timedelta(days=1))
        cell.sub = builders.subscription(self.db, self.club, customer=cell.customer)
        cell.first_id = f"first-{tag}"
        # The first outcome
        self.move(START)
        self.platform.script = [first]
        _charge(self.charge, cell.sub, cell.first_id)
        self.platform.script = []
        # The second event
        self.move(LATER)
        self._second(cell, tag)
        problems = self.check(cell, settled=False)
        # Everything settles: reconciliation, one more retry, reconciliation
        self.move(LATER + timedelta(minutes=5))
        self._reconcile()
        _charge(self.charge, cell.sub, f"final-{tag}")
        self._reconcile()
        problems += self.check(cell, settled=True)
        if problems:
            cell.result, cell.detail = "fail", "; ".join(problems)
        return cell

    def _reconcile(self) -> None:
        reconciliation.reconcile(
            SqlAlchemyUnitOfWork(), self.platform, LATER + timedelta(minutes=5), PENDING_TIMEOUT
        )

    def _outcome(self, cell: Cell, outcome: str, sent_at: datetime, reason: str = "declined"):
        data = {"request_id": cell.first_id, "outcome": outcome}
        if outcome == "failure":
            data["reason"] = reason
        event = new_event("payment-outcome", **data)
        event["occurred_at"] = sent_at.isoformat()
        return event

    def _second(self, cell: Cell, tag: str) -> None:
        second, has_order = cell.second, self.platform.book.order(cell.first_id) is not None
        if second == "retry same id":
            _charge(self.charge, cell.sub, cell.first_id)
        elif second == "retry new id":
            _charge(self.charge, cell.sub, f"second-{tag}")
        elif second == "concurrent charge":
            threads = [
                threading.Thread(target=_charge, args=(self.charge, cell.sub, f"c{n}-{tag}"))
                for n in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        elif second == "billing-run message":
            message = billing.BillingMessage(
                cell.sub, "2026-11", billing.request_id_for(cell.sub, "2026-11")
            )
            # A platform error or a charge in progress: SQS delivers it again later.
            with contextlib.suppress(errors.PlatformError, errors.ChargeInProgress):
                self.worker.settle_one(message)
        elif second == "success webhook":
            if has_order:  # the platform reports only orders it holds
                _webhook(self.webhooks, self._outcome(cell, "success", LATER), LATER)
        elif second == "late failure webhook":
            # The platform's payment fails after all (dated after everything so far).
            if has_order:
                self.platform.book.fail_payment(cell.first_id)
            _webhook(self.webhooks, self._outcome(cell, "failure", LATER), LATER)
        elif second == "stale webhook":
            # A failure dated before the first attempt was even sent.
            stale = self._outcome(cell, "failure", START - timedelta(hours=1), "old")
            _webhook(self.webhooks, stale, LATER)
        elif second == "duplicate webhook":
            event = self._outcome(cell, "success" if has_order else "failure", LATER)
            _webhook(self.webhooks, event, LATER)
            _webhook(self.webhooks, event, LATER)
        elif second == "reconciliation":
            self._reconcile()

    def check(self, cell: Cell, settled: bool) -> list[str]:
        stage = "settled" if settled else "after the second event"
        problems: list[str] = []
        orders = [o for o in self.platform.book.orders if o["customer_id"] == cell.customer]
        paid = [o for o in orders if o.get("status") == "charged"]
        if len(paid) > 1:
            problems.append(f"{stage}: {len(paid)} paid orders for one period")
        with self.db.connect() as conn:
            row = (
                conn.execute(
                    text("SELECT * FROM charge WHERE subscription_id = :s"), {"s": cell.sub}
                )
                .mappings()
                .first()
            )
            status = conn.scalar(
                text(
                    "SELECT status_id FROM subscription_status_history WHERE subscription_id = :s"
                    " ORDER BY effect_date DESC, create_date DESC, id DESC LIMIT 1"
                ),
                {"s": cell.sub},
            )
            kinds = set(
                conn.scalars(
                    text("SELECT kind FROM charge_anomaly WHERE subscription_id = :s"),
                    {"s": cell.sub},
                )
            )
        state = row["state"] if row else None
        paid_ids = {o["request_id"] for o in paid}
        paid_by = row and (row["paid_request_id"] or row["request_id"])
        # A paid order whose payment failed later stays paid in the ledger, as a reversal
        # recorded for review: that is agreement, not a silent difference.
        if state == "succeeded" and paid_by not in paid_ids and "reversal" not in kinds:
            problems.append(f"{stage}: ledger paid by {paid_by}, no such paid order")
        if paid and state in ("failed", "error", "abandoned", None):
            problems.append(f"{stage}: the platform holds a paid order, the ledger says {state}")
        if settled and paid and state != "succeeded":
            problems.append(f"{stage}: a paid order, but the ledger settled as {state}")
        if status != 1:
            problems.append(f"{stage}: the subscription was cancelled (status {status})")
        if len(paid) > 1 and "double_charge" not in kinds:
            problems.append(f"{stage}: a double charge was not recorded")
        return problems


def markdown(cells: list[Cell]) -> str:
    """docs/exactly-once.md from the cells' results."""
    by = {(c.first, c.second): c for c in cells}
    passed = sum(c.result == "pass" for c in cells)
    lines = [
        "For: engineers and reviewers who want to know what the charge path survives.",
        "",
        "# Exactly once: the fault matrix",
        "",
        "Written by `make exactly-once` (scripts/exactly_once.py) from the result of",
        "`tests/faults/test_exactly_once.py`, which `make test` runs. Each cell charges a fresh",
        "subscription once with the *first outcome* (row), then delivers the *second event*",
        "(column), then lets everything settle (reconciliation, one more charge with a new",
        "request id, reconciliation), on the real database, through the real handlers, against",
        "the fake platform in deduplicating mode. After the second event and again once",
        "settled it checks: at most one paid order per (subscription, period) at the platform;",
        "the ledger agrees with the platform's orders; no paying customer is cancelled.",
        "See docs/money-path.md for the rules these cells exercise.",
        "",
        f"**{passed} of {len(cells)} cells pass.**",
        "",
        "| first outcome \\ second event | " + " | ".join(SECOND) + " |",
        "|---|" + "---|" * len(SECOND),
    ]
    for first in FIRST:
        marks = []
        for second in SECOND:
            cell = by.get((first, second))
            marks.append("—" if cell is None else ("pass" if cell.result == "pass" else "**FAIL**"))
        lines.append(f"| {first} | " + " | ".join(marks) + " |")
    failures = [c for c in cells if c.result != "pass"]
    if failures:
        lines += ["", "## Failing cells", ""]
        lines += [f"- {c.first} / {c.second}: {c.detail}" for c in failures]
    lines += [
        "",
        "## The outcomes and events",
        "",
        "- 2xx: the order is created and paid. 402: declined, no order. 401 / 429: the",
        "  platform refused our key or throttled us, no order. 5xx: the order was created,",
        "  then the platform failed. timeout / dropped: the order was created, the answer",
        "  never came. unreachable: never sent. crash: the order was created and the Lambda",
        "  died before recording anything (the row stays pending until it is stale).",
        "- Webhooks are what the platform would send about the first request id: a success",
        "  only for an order it holds; a late failure (the payment fails after all, dated",
        "  after everything); a stale failure dated before the first attempt; a duplicate",
        "  (the same event id delivered twice).",
        "",
    ]
    return "\n".join(lines)
