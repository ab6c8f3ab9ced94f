"""An entity's status over time, for readers: what it is now, since when, what is scheduled.

The repository hands over the history rows already in the current-status rule's order
(effect_date, then create_date with NULL lowest, then id, newest first; NULL effect
dates left out), so the rule's tie-breaks stay in SQL; this module only splits the rows
at `now`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.read_model import HistoryRow


@dataclass(frozen=True)
class Timeline:
    """`status_id` None: no row counts yet (a club not yet open, a row written by SQL)."""

    status_id: int | None
    since: datetime | None
    scheduled: tuple[HistoryRow, ...]


def timeline(rows_in_rule_order: Sequence[HistoryRow], now: datetime) -> Timeline:
    """The current status (the first row dated at or before `now`), when that row took
    effect, and the changes still to come, in the order they take effect: for each future
    instant only the row the rule picks then (the first one of that date)."""
    current = next((row for row in rows_in_rule_order if row.effect_date <= now), None)
    scheduled: list[HistoryRow] = []
    for row in reversed(rows_in_rule_order):
        if row.effect_date <= now:
            continue
        if scheduled and scheduled[-1].effect_date == row.effect_date:
            # Rows of one instant arrive oldest-ranked first when reversed: the last wins.
            scheduled[-1] = row
        else:
            scheduled.append(row)
    if current is None:
        return Timeline(None, None, tuple(scheduled))
    return Timeline(current.status_id, current.effect_date, tuple(scheduled))
