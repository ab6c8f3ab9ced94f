"""In-memory stand-ins for the ports, for domain unit tests."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from domain.charges import Charge, ChargeState, ChargeTarget
from domain.model import StatusChange, Subscription, SubscriptionStatus
from domain.ports import PlatformAnswer


def current(rows: Iterable[tuple[datetime | None, datetime | None, str, int]], at: datetime):
    """The data-model rule over (effect_date, create_date, id, status) tuples."""
    counting = [r for r in rows if r[0] is not None and r[0] <= at]
    if not counting:
        return None
    return max(counting, key=lambda r: (r[0], r[1] or datetime.min, r[2]))[3]


class FakeClubRepository:
    def __init__(self) -> None:
        self.history: dict[int, list[tuple]] = {}

    def open(self, club_id: int, status: int, effect_date: datetime) -> None:
        self.history.setdefault(club_id, []).append(
            (effect_date, effect_date, f"c{len(self.history)}", status)
        )

    def exists(self, club_id: int) -> bool:
        return club_id in self.history

    def current_status(self, club_id: int, at: datetime) -> int | None:
        return current(self.history.get(club_id, []), at)


class FakeSubscriptionRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow
        self.rows: dict[str, Subscription] = {}
        self.claims: dict[tuple[int, str], str] = {}

    def get(self, subscription_id: str, at: datetime, *, lock: bool = False):
        row = self.rows.get(subscription_id)
        if row is None:
            return None
        status = current(
            [
                (c.effect_date, c.create_date, c.id, c.status_id)
                for c in self.uow.history.rows
                if c.subscription_id == subscription_id
            ],
            at,
        )
        return Subscription(row.id, row.club_id, row.customer_id, row.create_date, status)

    def claim(self, club_id: int, customer_id: str, subscription_id: str) -> str | None:
        holder = self.claims.get((club_id, customer_id))
        if holder:
            return holder
        self.claims[(club_id, customer_id)] = subscription_id
        return None

    def find_by_customer(self, club_id: int, customer_id: str) -> str | None:
        return next(
            (
                s.id
                for s in self.rows.values()
                if s.club_id == club_id and s.customer_id == customer_id
            ),
            None,
        )

    def add(self, subscription: Subscription) -> None:
        self.rows[subscription.id] = subscription

    def eligible_ids(self, at, club_statuses, after, limit) -> list[str]:
        ids = sorted(
            s.id
            for s in self.rows.values()
            if self.get(s.id, at).status_id == SubscriptionStatus.ACTIVE
            and self.uow.clubs.current_status(s.club_id, at) in set(club_statuses)
            and (after is None or s.id > after)
        )
        return ids[:limit] if limit else ids


class FakeStatusHistoryRepository:
    def __init__(self) -> None:
        self.rows: list[StatusChange] = []
        self.superseded: list[tuple[StatusChange, str, str]] = []

    def add(self, changes: Sequence[StatusChange]) -> None:
        self.rows.extend(changes)

    def supersede_pending(self, subscription_id, now, superseded_by, reason) -> list[str]:
        pending = [
            r for r in self.rows if r.subscription_id == subscription_id and r.effect_date > now
        ]
        for row in pending:
            self.rows.remove(row)
            self.superseded.append((row, superseded_by, reason))
        return [r.id for r in pending]


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.clubs = FakeClubRepository()
        self.history = FakeStatusHistoryRepository()
        self.subscriptions = FakeSubscriptionRepository(self)
        self.charges = FakeChargeRepository()
        self.audit = FakeAuditRepository()
        self.club_changes = FakeClubChangeRepository()
        self.views = FakeViewRepository(self)
        self.commits = 0
        # The money path (issue 12): more repositories, and a transaction that rolls back
        # what it did not commit, like the real unit of work.
        self.requests = FakePlatformRequestRepository()
        self.billing = FakeBillingRepository(self)
        self.webhooks = FakeWebhookRepository(self)
        self.holds = FakeHoldRepository()
        self.rollbacks = 0
        self._snapshot: dict | None = None
        self._depth = 0

    _STATEFUL = (
        "clubs",
        "history",
        "subscriptions",
        "charges",
        "audit",
        "requests",
        "billing",
        "webhooks",
        "holds",
    )

    def _state(self) -> dict:
        return {
            name: copy.deepcopy({k: v for k, v in vars(getattr(self, name)).items() if k != "uow"})
            for name in self._STATEFUL
        }

    def __enter__(self) -> FakeUnitOfWork:
        if self._depth == 0:
            self._snapshot = self._state()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._snapshot is not None:
            # Roll back whatever was written since the last commit.
            if self._snapshot != self._state():
                self.rollbacks += 1
                for name, values in self._snapshot.items():
                    vars(getattr(self, name)).update(values)
            self._snapshot = None

    def commit(self) -> None:
        self.commits += 1
        if self._snapshot is not None:
            self._snapshot = self._state()


class FakeChargeRepository:
    def __init__(self) -> None:
        self.targets: dict[str, ChargeTarget] = {}
        self.rows: dict[tuple[str, str], Charge] = {}
        self.attempts: list[tuple[int, int, str]] = []

    def target(self, subscription_id, at):
        return self.targets.get(subscription_id)

    def find_for_update(self, subscription_id, period):
        return self.rows.get((subscription_id, period))

    def create_pending(self, target, period, request_id, now, billing_date=None):
        if (target.subscription_id, period) in self.rows:
            return None  # as ON CONFLICT (subscription_id, period) DO NOTHING
        charge = Charge(
            len(self.rows) + 1,
            target.subscription_id,
            period,
            request_id,
            ChargeState.PENDING,
            1,
            None,
            None,
            now,
            now,
            now,
            billing_date,
        )
        self.rows[(target.subscription_id, period)] = charge
        self.attempts.append((charge.id, 1, request_id))
        return charge

    def _by_id(self, charge_id):
        return next(c for c in self.rows.values() if c.id == charge_id)

    def begin_attempt(self, charge, request_id, target, now):
        old = self._by_id(charge.id)
        if (old.state, old.attempts) != (charge.state, charge.attempts):
            return None
        charge = replace(
            old,
            state=ChargeState.PENDING,
            attempts=old.attempts + 1,
            request_id=request_id,
            updated_at=now,
            last_attempt_at=now,
        )
        self.rows[(old.subscription_id, old.period)] = charge
        self.attempts.append((charge.id, charge.attempts, request_id))
        return charge

    def record(self, charge, state, status, body, error, now):
        current = self._by_id(charge.id)
        if current.attempts != charge.attempts or current.request_id != charge.request_id:
            return None
        changes = {"platform_status": status, "platform_body": body, "updated_at": now}
        if current.state == ChargeState.PENDING:
            changes["state"] = state
            changes["failure_reason"] = error
            if state == ChargeState.FAILED:
                changes["declined_at"] = current.declined_at or now
            if state == ChargeState.SUCCEEDED:
                changes["paid_request_id"] = current.request_id
        settled = replace(current, **changes)
        self.rows[(current.subscription_id, current.period)] = settled
        return settled

    # --- the money path (issue 12) ---

    def transition(self, charge, state, now, *, reason=None, paid_request_id=None, outcome_at=None):
        current = self._by_id(charge.id)
        read = (charge.state, charge.request_id, charge.attempts)
        if (current.state, current.request_id, current.attempts) != read:
            return None
        changes = {"state": state, "failure_reason": reason, "updated_at": now}
        if state == ChargeState.SUCCEEDED:
            changes["paid_request_id"] = paid_request_id or current.request_id
        if outcome_at is not None:
            changes["outcome_at"] = outcome_at
        if state == ChargeState.FAILED:
            changes["declined_at"] = current.declined_at or now
        moved = replace(current, **changes)
        self.rows[(current.subscription_id, current.period)] = moved
        return moved

    def add_anomaly(self, anomaly) -> bool:
        self.anomalies = getattr(self, "anomalies", [])
        key = (anomaly.kind, anomaly.charge_id, anomaly.request_id)
        if any((a.kind, a.charge_id, a.request_id) == key for a in self.anomalies):
            return False
        self.anomalies.append(anomaly)
        return True

    def find_by_request_id(self, request_id, *, lock=True):
        ids = {cid for cid, _n, rid in self.attempts if rid == request_id}
        return next(
            (c for c in self.rows.values() if c.request_id == request_id or c.id in ids), None
        )

    def find(self, subscription_id, period, *, lock=True):
        return self.rows.get((subscription_id, period))

    def unsettled(self, subscription_id):
        open_states = {"pending", "failed", "unknown", "error"}
        return [
            c
            for c in self.rows.values()
            if c.subscription_id == subscription_id and c.state in open_states
        ]

    def latest_paid(self, subscription_id):
        paid = [
            c.billing_date
            for c in self.rows.values()
            if c.subscription_id == subscription_id
            and c.state == ChargeState.SUCCEEDED
            and c.billing_date
        ]
        return max(paid, default=None)


class FakeAuditRepository:
    def __init__(self) -> None:
        self.entries: list = []

    def add(self, entry) -> None:
        self.entries.append(entry)


class FakeEcommerce:
    """Answers from a script: PlatformAnswer values, or exceptions to raise."""

    def __init__(self, *script) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str, int]] = []
        self.not_configured: Exception | None = None

    def ready(self) -> None:
        if self.not_configured is not None:
            raise self.not_configured

    def place_order(self, request_id, customer_id, sku_id):
        self.calls.append((request_id, customer_id, sku_id))
        outcome = self.script.pop(0) if self.script else PlatformAnswer(201, "{}", {}, True)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class FakeClubChangeRepository:
    """No club changes: what a status change asks of them (domain/club_changes.py)."""

    def pending_touching(self, subscription_id, now):
        return []


class FakeViewRepository:
    """The read endpoints' histories, over the fakes above, in the rule's order."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    def club_history(self, club_id: int) -> list:
        from domain.read_model import HistoryRow

        rows = [r for r in self.uow.clubs.history.get(club_id, []) if r[0] is not None]
        rows.sort(key=lambda r: (r[0], r[1] or datetime.min, r[2]), reverse=True)
        return [HistoryRow(r[3], r[0]) for r in rows]


# --- the money path (issue 12) ---


class FakePlatformRequestRepository:
    def __init__(self) -> None:
        self.claims: dict[str, tuple[str, str]] = {}

    def claim(self, request_id, kind, subject, now) -> bool:
        return self.claims.setdefault(request_id, (kind, subject)) == (kind, subject)


class FakeBillingRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow
        self.cards: dict[str, object] = {}

    def card_unavailable(self, customer_id, created=None):
        report = self.cards.get(customer_id or "")
        if report is None or (created is not None and report.reported_at < created):
            return None
        return report

    def report_card_unavailable(self, report, event_id) -> None:
        self.cards[report.customer_id] = report

    def clear_card_report(self, subscription_id, now):
        target = self.uow.charges.targets.get(subscription_id)
        customer = target.customer_id if target else None
        report = self.cards.get(customer or "")
        if report is not None and report.reported_at <= now:
            del self.cards[customer]
            return customer
        return None


class FakeWebhookRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow
        self.events: dict[str, tuple[object, str]] = {}
        self.refunds: list = []

    def add(self, event, now) -> bool:
        if event.event_id in self.events:
            return False
        self.events[event.event_id] = (event, "pending")
        return True

    def mark_applied(self, event_id, now) -> None:
        self.events[event_id] = (self.events[event_id][0], "applied")

    def pending_for(self, request_id):
        return [
            e
            for e, state in self.events.values()
            if state == "pending" and e.request_id == request_id
        ]

    def add_refund(self, charge, event, now) -> None:
        self.refunds.append((charge.id, event.event_id))


class FakeHoldRepository:
    def __init__(self) -> None:
        self.rows: list[list] = []

    def hold(self, subscription_id, period, reason, now) -> bool:
        for r in self.rows:
            if r[0] == subscription_id and r[1] == period and r[3] is None:
                r[2], r[4] = reason, now
                return False
        self.rows.append([subscription_id, period, reason, None, now])
        return True

    def open(self):
        return [(r[0], r[1], r[2]) for r in self.rows if r[3] is None]

    def held_at(self, at) -> bool:
        return any(r[4] == at for r in self.rows if len(r) > 4)

    def release(self, now, operator):
        released = [r for r in self.rows if r[3] is None]
        for r in released:
            r[3] = now
        return [(r[0], r[1], r[2]) for r in released]
