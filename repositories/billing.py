"""What the billing run reads: the eligible set, streamed, and the ledger per chunk."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import ARRAY, any_, bindparam, cast, func, or_, select, text, tuple_, union
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from domain.billing import Candidate, CardReport, LedgerState
from domain.charges import ChargeState
from repositories.charges import schedule_of
from repositories.subscriptions import eligible_select
from repositories.tables import BillingSchedule, CardUnavailable, Charge, Subscription

UNSETTLED = ("pending", "failed", "unknown", "error")

# Per chunk of a thousand subscriptions, the ids travel as one array each: an IN list of a
# thousand (subscription, period) pairs took PostgreSQL about 20 ms to plan (an OR of a
# thousand ANDs) for a millisecond of execution, some 15 s per planning pass at a million.
_OPEN_LEDGER = text(
    f"""
    SELECT subscription_id, period, state, attempts, billing_date, created_at, declined_at,
           last_attempt_at
    FROM charge
    WHERE subscription_id = ANY(CAST(:ids AS varchar[]))
      AND (state IN ({", ".join(f"'{state}'" for state in UNSETTLED)})
           OR (subscription_id, period) IN (
               SELECT * FROM unnest(CAST(:subs AS varchar[]), CAST(:periods AS varchar[]))))
    """
)
# Built once: every successful charge clears (most often, finds no) card report.
_CLEAR_CARD_REPORT = text(
    """
    DELETE FROM card_unavailable
    WHERE customer_store_id = (SELECT customer_store_id FROM subscription
                               WHERE id = :subscription_id)
      AND reported_at <= :now
    RETURNING customer_store_id
    """
)
_CARD_REPORT = text(
    "SELECT customer_store_id, reason, reported_at FROM card_unavailable"
    " WHERE customer_store_id = :customer"
)
# Subscriptions with the card report that applies to them: their customer's, reported
# after they were created (or when their create_date is unknown).
_REPORTED = (
    select(
        Subscription.id,
        CardUnavailable.customer_store_id,
        CardUnavailable.reason,
        CardUnavailable.reported_at,
    )
    .join(CardUnavailable, CardUnavailable.customer_store_id == Subscription.customer_store_id)
    .where(
        or_(
            Subscription.create_date.is_(None),
            Subscription.create_date <= CardUnavailable.reported_at,
        )
    )
)
_CARD_REPORTS = _REPORTED.where(
    Subscription.id == any_(cast(bindparam("ids"), ARRAY(Subscription.id.type)))
)


def _cancellable(declined_before: datetime):
    """The subscriptions `billing.decide` could cancel: a declined period whose window
    closed (its first decline before `declined_before`), or a card report that applies
    (as `card_reports` reads them)."""
    declined = select(Charge.subscription_id).where(
        Charge.state == ChargeState.FAILED.value, Charge.declined_at <= declined_before
    )
    return union(declined, _REPORTED.with_only_columns(Subscription.id))


class SqlAlchemyBillingRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def eligible(
        self,
        at: datetime,
        club_statuses: Iterable[int],
        chunk: int,
        after: str | None = None,
        in_order: bool = False,
        declined_before: datetime | None = None,
    ) -> Iterator[list[Candidate]]:
        eligible = eligible_select(at, club_statuses).subquery()
        stmt = (
            select(
                Subscription.id,
                Subscription.create_date,
                BillingSchedule.interval,
                BillingSchedule.anniversary,
                BillingSchedule.changed_at,
                BillingSchedule.previous_interval,
                BillingSchedule.previous_anniversary,
            )
            .join(eligible, eligible.c.id == Subscription.id)
            .outerjoin(BillingSchedule, BillingSchedule.club_id == Subscription.club_id)
            # A server-side cursor: PostgreSQL sends `chunk` rows at a time.
            .execution_options(stream_results=True, yield_per=chunk)
        )
        if declined_before is not None:
            stmt = stmt.where(Subscription.id.in_(_cancellable(declined_before)))
        if in_order or after:
            # The billing run's order: it resumes after its checkpoint.
            if after:
                stmt = stmt.where(eligible.c.id > after)
            stmt = stmt.order_by(eligible.c.id)
        result = self.connection.execute(stmt)
        try:
            for rows in result.partitions():
                yield [
                    Candidate(
                        row.id,
                        schedule_of(
                            row.interval,
                            row.anniversary,
                            row.changed_at,
                            row.previous_interval,
                            row.previous_anniversary,
                        ),
                        row.create_date,
                    )
                    for row in rows
                ]
        finally:
            result.close()

    def count_eligible(self, at: datetime, club_statuses: Iterable[int]) -> int:
        eligible = eligible_select(at, club_statuses).subquery()
        return self.connection.scalar(select(func.count()).select_from(eligible)) or 0

    def ledger_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], LedgerState]:
        if not keys:
            return {}
        rows = self.connection.execute(
            select(Charge.subscription_id, Charge.period, Charge.state, Charge.attempts).where(
                tuple_(Charge.subscription_id, Charge.period).in_(list(keys))
            )
        )
        return {
            (row.subscription_id, row.period): LedgerState(ChargeState(row.state), row.attempts)
            for row in rows
        }

    def card_unavailable(
        self, customer_id: str | None, created: datetime | None = None
    ) -> CardReport | None:
        """The customer's card report, if it applies to a subscription created at
        `created` (reports apply to subscriptions created before them)."""
        if not customer_id:
            return None
        row = self.connection.execute(_CARD_REPORT, {"customer": customer_id}).one_or_none()
        if row is None or (created is not None and row.reported_at < created):
            return None
        return CardReport(row.customer_store_id, row.reason, row.reported_at)

    def open_ledger(
        self, subscription_ids: Sequence[str], current: Sequence[tuple[str, str]]
    ) -> dict[str, list[LedgerState]]:
        """Per subscription: its row of the current period and every unsettled row."""
        if not subscription_ids:
            return {}
        rows = self.connection.execute(
            _OPEN_LEDGER,
            {
                "ids": list(subscription_ids),
                "subs": [sub for sub, _ in current],
                "periods": [period for _, period in current],
            },
        )
        found: dict[str, list[LedgerState]] = {}
        for row in rows:
            found.setdefault(row.subscription_id, []).append(
                LedgerState(
                    ChargeState(row.state),
                    row.attempts,
                    row.period,
                    row.billing_date,
                    row.created_at,
                    row.declined_at,
                    row.last_attempt_at,
                )
            )
        return found

    def card_reports(self, subscription_ids: Sequence[str]) -> dict[str, CardReport]:
        """The card reports that apply to these subscriptions (created before the report)."""
        if not subscription_ids:
            return {}
        rows = self.connection.execute(_CARD_REPORTS, {"ids": list(subscription_ids)})
        return {
            row.id: CardReport(row.customer_store_id, row.reason, row.reported_at) for row in rows
        }

    def clear_card_report(self, subscription_id: str, now: datetime) -> str | None:
        """A successful charge clears its customer's earlier card report; returns the
        customer whose report was cleared."""
        return self.connection.scalar(
            _CLEAR_CARD_REPORT, {"subscription_id": subscription_id, "now": now}
        )

    def report_card_unavailable(self, report: CardReport, event_id: str) -> None:
        values = {
            "customer_store_id": report.customer_id,
            "reason": report.reason,
            "reported_at": report.reported_at,
            "event_id": event_id,
        }
        self.connection.execute(
            pg_insert(CardUnavailable)
            .values(**values)
            .on_conflict_do_update(index_elements=["customer_store_id"], set_=values)
        )
