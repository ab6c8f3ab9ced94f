"""What the domain needs from storage; repositories/ implements it, tests fake it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self

from domain.model import StatusChange, Subscription

if TYPE_CHECKING:
    from domain.audit import AuditEntry
    from domain.billing import Candidate, CardReport, LedgerState
    from domain.charges import Charge, ChargeState, ChargeTarget
    from domain.read_model import ClubInfo, ClubListRow, HistoryRow, SubscriptionRecord
    from domain.webhooks import PlatformEvent


@dataclass(frozen=True)
class PlatformAnswer:
    """What the e-commerce platform answered: its status, its body as text, and as JSON;
    and its Retry-After, when it sent a valid one (seconds, or an HTTP date)."""

    status: int
    text: str
    json: Any = None
    is_json: bool = False
    retry_after: str | None = None


class Ecommerce(Protocol):
    def ready(self) -> None:
        """Resolve configuration and secrets; raises PlatformNotConfigured. Called before
        anything is written, so a missing secret leaves no ledger row behind."""
        ...

    def place_order(self, request_id: str, customer_id: str, sku_id: int) -> PlatformAnswer:
        """POST /order/{request_id}; raises PlatformUnreachable or PlatformTimeout."""
        ...


class OrderLookup(Protocol):
    """What reconciliation asks the platform. A platform without such calls raises
    LookupUnsupported, and the rows are reported for review instead of guessed."""

    def find_order(self, request_id: str) -> dict[str, Any] | None:
        """GET /order/{request_id}: the order, or None when the platform has none."""
        ...

    def list_orders(self) -> list[dict[str, Any]]:
        """Every order the platform holds (the fake's GET /orders)."""
        ...


class ClubRepository(Protocol):
    def exists(self, club_id: int) -> bool: ...

    def current_status(self, club_id: int, at: datetime) -> int | None: ...


class SubscriptionRepository(Protocol):
    def get(self, subscription_id: str, at: datetime, *, lock: bool = False) -> Subscription | None:
        """The subscription with its current status at `at`; `lock` serialises writers."""
        ...

    def claim(self, club_id: int, customer_id: str, subscription_id: str) -> str | None:
        """Reserve (club, customer) for a new subscription in this transaction.

        Returns None when reserved, or the id of the subscription holding the reservation.
        Blocks while a concurrent transaction holds the same reservation uncommitted.
        """
        ...

    def find_by_customer(self, club_id: int, customer_id: str) -> str | None: ...

    def add(self, subscription: Subscription) -> None: ...

    def eligible_ids(
        self,
        at: datetime,
        club_statuses: Iterable[int],
        after: str | None,
        limit: int | None,
    ) -> list[str]: ...


class StatusHistoryRepository(Protocol):
    def add(self, changes: Sequence[StatusChange]) -> None: ...

    def supersede_pending(
        self, subscription_id: str, now: datetime, superseded_by: str, reason: str
    ) -> list[str]:
        """Move rows not yet in effect at `now` to the audit table; returns their ids."""
        ...


class ChargeRepository(Protocol):
    def target(self, subscription_id: str, at: datetime) -> ChargeTarget | None: ...

    def find_for_update(self, subscription_id: str, period: str) -> Charge | None: ...

    def create_pending(
        self,
        target: ChargeTarget,
        period: str,
        request_id: str,
        now: datetime,
        billing_date: datetime | None = None,
    ) -> Charge | None:
        """Insert the pending row, or return None if a concurrent one was inserted first."""
        ...

    def begin_attempt(
        self, charge: Charge, request_id: str, target: ChargeTarget, now: datetime
    ) -> Charge | None:
        """A new attempt on a row still as read (state, attempts); None if it moved."""
        ...

    def record(
        self,
        charge: Charge,
        state: ChargeState,
        status: int | None,
        body: str | None,
        error: str | None,
        now: datetime,
    ) -> Charge | None:
        """Store an attempt's outcome; None if a newer attempt has taken the row over."""
        ...

    def find_by_request_id(self, request_id: str, *, lock: bool = True) -> Charge | None: ...

    def transition(
        self,
        charge: Charge,
        state: ChargeState,
        now: datetime,
        *,
        reason: str | None = None,
        paid_request_id: str | None = None,
        outcome_at: datetime | None = None,
    ) -> Charge | None:
        """Move a row from the state, request id and attempt it was read in; None when
        another writer moved it first (re-read and decide again)."""
        ...

    def add_anomaly(self, anomaly: Any) -> bool: ...

    def find(self, subscription_id: str, period: str, *, lock: bool = True) -> Charge | None: ...

    def unsettled(self, subscription_id: str) -> list[Charge]: ...

    def latest_paid(self, subscription_id: str) -> datetime | None: ...


class AuditRepository(Protocol):
    def add(self, entry: AuditEntry) -> None:
        """Append one row; rows are never changed or removed."""
        ...


class BillingRepository(Protocol):
    def eligible(
        self,
        at: datetime,
        club_statuses: Iterable[int],
        chunk: int,
        after: str | None = None,
        in_order: bool = False,
        declined_before: datetime | None = None,
    ) -> Iterator[list[Candidate]]:
        """Eligible subscriptions with their schedule, streamed `chunk` rows at a time
        (`in_order`: by id, after `after`; `declined_before`: only those with a failed
        period first declined before it, or a card report that applies)."""
        ...

    def count_eligible(self, at: datetime, club_statuses: Iterable[int]) -> int: ...

    def ledger_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], LedgerState]:
        """The ledger rows of these (subscription, period) pairs that exist."""
        ...

    def card_unavailable(
        self, customer_id: str | None, created: datetime | None = None
    ) -> CardReport | None: ...

    def open_ledger(
        self, subscription_ids: Sequence[str], current: Sequence[tuple[str, str]]
    ) -> dict[str, list[LedgerState]]: ...

    def card_reports(self, subscription_ids: Sequence[str]) -> dict[str, CardReport]: ...

    def clear_card_report(self, subscription_id: str, now: datetime) -> str | None: ...

    def report_card_unavailable(self, report: CardReport, event_id: str) -> None: ...


class WebhookRepository(Protocol):
    def add(self, event: PlatformEvent, now: datetime) -> bool:
        """Store a new event as pending; False when its id was received before."""
        ...

    def mark_applied(self, event_id: str, now: datetime) -> None: ...

    def pending_for(self, request_id: str) -> list[PlatformEvent]: ...

    def add_refund(self, charge: Charge, event: PlatformEvent, now: datetime) -> None: ...


class ViewRepository(Protocol):
    """What the read endpoints read (GET /clubs, /club/{id}, /subscription/{id})."""

    def clubs(self, at: datetime, status_id: int | None | str) -> list[ClubListRow]:
        """Clubs by id whose current status is `status_id` (None: no current status;
        "ALL": every club), each with its next scheduled change."""
        ...

    def club(self, club_id: int) -> ClubInfo | None: ...

    def club_history(self, club_id: int) -> list[HistoryRow]:
        """Its dated history rows in the current-status rule's order, newest first."""
        ...

    def subscription(
        self, subscription_id: str, at: datetime, ledger_since: datetime
    ) -> SubscriptionRecord | None:
        """The subscription with its club (status at `at`), schedule, history, and the
        ledger rows not settled or created since `ledger_since`, oldest first."""
        ...


class PlatformRequestRepository(Protocol):
    def claim(self, request_id: str, kind: str, subject: str, now: datetime) -> bool:
        """Register a request id for (kind, subject) before sending it; False when it
        already belongs to another one."""
        ...


class HoldRepository(Protocol):
    def hold(self, subscription_id: str, period: str, reason: str, now: datetime) -> bool: ...

    def open(self) -> list[tuple[str, str, str | None]]: ...

    def release(self, now: datetime, operator: str) -> list[tuple[str, str, str | None]]: ...

    def held_at(self, at: datetime) -> bool: ...


class ReconciliationRepository(Protocol):
    def unsettled(self, stale_before: datetime) -> list[Charge]:
        """Rows `unknown`, or `pending` with a last attempt before `stale_before`."""
        ...

    def paid_since(self, since: datetime) -> list[Charge]: ...

    def open_anomalies(self) -> list[Any]: ...

    def resolve_anomaly(
        self, anomaly_id: int, resolution: str, operator: str, now: datetime
    ) -> Any: ...


class UnitOfWork(Protocol):
    clubs: ClubRepository
    subscriptions: SubscriptionRepository
    history: StatusHistoryRepository
    charges: ChargeRepository
    audit: AuditRepository
    billing: BillingRepository
    webhooks: WebhookRepository
    # Club changes: repositories/club_changes.py, speaking domain/club_change_model.py.
    club_changes: Any
    views: ViewRepository

    requests: PlatformRequestRepository
    holds: HoldRepository
    reconciliation: ReconciliationRepository

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None: ...
