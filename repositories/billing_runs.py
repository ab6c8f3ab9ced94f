"""The billing run's checkpoint (table billing_run, revision 0013): claim, advance, finish.

An invocation claims the day's run with a lease; only one holds it at a time. It moves
`last_queued_id` forward only after every message up to that id was acknowledged by SQS,
and commits that before it plans further.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Date, DateTime, Integer, String, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from domain.billing_runs import RunState
from repositories.tables import metadata

BillingRun = Table(
    "billing_run",
    metadata,
    Column("run_date", Date, primary_key=True),
    Column("planned_at", DateTime),
    Column("last_queued_id", String(36)),
    Column("queued", BigInteger),
    Column("settled", BigInteger),
    Column("invocations", Integer),
    Column("lease_until", DateTime),
    Column("started_at", DateTime),
    Column("updated_at", DateTime),
    Column("finished_at", DateTime),
)


def _state(row) -> RunState:
    return RunState(
        run_date=row.run_date,
        planned_at=row.planned_at,
        last_queued_id=row.last_queued_id,
        queued=row.queued,
        settled=row.settled,
        invocations=row.invocations,
        lease_until=row.lease_until,
        finished_at=row.finished_at,
    )


class SqlAlchemyBillingRunRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def claim(self, run_date: date, now: datetime, lease_until: datetime) -> RunState | None:
        """Take the run of `run_date` (creating it, planned at `now`) unless it is finished
        or another invocation's lease still holds; None then."""
        run = BillingRun.c
        stmt = pg_insert(BillingRun).values(
            run_date=run_date,
            planned_at=now,
            queued=0,
            settled=0,
            invocations=1,
            lease_until=lease_until,
            started_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[run.run_date],
            set_={
                "lease_until": lease_until,
                "invocations": run.invocations + 1,
                "updated_at": now,
            },
            where=run.finished_at.is_(None)
            & (run.lease_until.is_(None) | (run.lease_until <= now)),
        ).returning(*BillingRun.c)
        row = self.connection.execute(stmt).first()
        return None if row is None else _state(row)

    def get(self, run_date: date) -> RunState | None:
        row = self.connection.execute(
            select(BillingRun).where(BillingRun.c.run_date == run_date)
        ).first()
        return None if row is None else _state(row)

    def advance(
        self,
        run_date: date,
        last_queued_id: str,
        queued: int,
        settled: int,
        now: datetime,
        lease_until: datetime | None,
    ) -> None:
        run = BillingRun.c
        self.connection.execute(
            update(BillingRun)
            .where(run.run_date == run_date)
            .values(
                last_queued_id=last_queued_id,
                queued=run.queued + queued,
                settled=run.settled + settled,
                lease_until=lease_until,
                updated_at=now,
            )
        )

    def release(self, run_date: date, now: datetime, finished: bool) -> None:
        values = {"lease_until": None, "updated_at": now}
        if finished:
            values["finished_at"] = now
        self.connection.execute(
            update(BillingRun).where(BillingRun.c.run_date == run_date).values(**values)
        )
