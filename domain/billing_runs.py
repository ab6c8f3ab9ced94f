"""The daily billing run at scale: a run is planned in slices by subscription id, and its
progress is a checkpoint, so an invocation cut off halfway is resumed, not restarted.

- `last_queued_id`: every eligible subscription with an id up to it was planned, and the
  message of each one due was acknowledged by SQS. It only moves after that.
- A run is one per UTC day; every invocation of it plans with the instant its first
  invocation started (`planned_at`), so the set does not shift between invocations.
- One invocation at a time: it holds a lease (renewed at each checkpoint) that a crashed
  invocation's successor waits out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class RunState:
    run_date: date
    planned_at: datetime
    last_queued_id: str | None
    queued: int
    settled: int
    invocations: int
    lease_until: datetime | None
    finished_at: datetime | None


def run_date_for(now: datetime) -> date:
    """The run a daily invocation at `now` (UTC) belongs to."""
    return now.date()
