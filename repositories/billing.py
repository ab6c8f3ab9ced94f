"""What the billing run reads: the eligible set, streamed, and the ledger per chunk."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from domain.billing import Candidate, CardReport, LedgerState
from domain.charges import ChargeState
from repositories.charges import schedule_of
from repositories.subscriptions import eligible_select
from repositories.tables import BillingSchedule, CardUnavailable, Charge, Subscription


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
    ) -> Iterator[list[Candidate]]:
        eligible = eligible_select(at, club_statuses).subquery()
        stmt = (
            select(
                Subscription.id,
                Subscription.create_date,
                BillingSchedule.interval,
                BillingSchedule.anniversary,
            )
            .join(eligible, eligible.c.id == Subscription.id)
            .outerjoin(BillingSchedule, BillingSchedule.club_id == Subscription.club_id)
            # A server-side cursor: PostgreSQL sends `chunk` rows at a time.
            .execution_options(stream_results=True, yield_per=chunk)
        )
        if in_order or after:
            # The billing run's order: it resumes after its checkpoint.
            if after:
                stmt = stmt.where(eligible.c.id > after)
            stmt = stmt.order_by(eligible.c.id)
        result = self.connection.execute(stmt)
        try:
            for rows in result.partitions():
                yield [
                    Candidate(row.id, schedule_of(row.interval, row.anniversary), row.create_date)
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

    def card_unavailable(self, customer_id: str | None) -> CardReport | None:
        if not customer_id:
            return None
        row = self.connection.execute(
            select(CardUnavailable).where(CardUnavailable.customer_store_id == customer_id)
        ).one_or_none()
        if row is None:
            return None
        return CardReport(row.customer_store_id, row.reason, row.reported_at)

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
