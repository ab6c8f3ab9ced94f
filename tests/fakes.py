"""In-memory stand-ins for the ports, for domain unit tests."""

from __future__ import annotations

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

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def commit(self) -> None:
        self.commits += 1


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

    def begin_attempt(self, charge_id, request_id, target, now):
        old = self._by_id(charge_id)
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
        if current.attempts != charge.attempts or current.state != ChargeState.PENDING:
            return None
        settled = replace(
            current, state=state, platform_status=status, platform_body=body, updated_at=now
        )
        self.rows[(current.subscription_id, current.period)] = settled
        return settled


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
