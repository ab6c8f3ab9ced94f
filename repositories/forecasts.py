"""What the forecast reads (the run's decision inputs, a chunk at a time) and stores.

The inputs are the ones `settlement.settle` reads one subscription at a time (the charge
target, the period's ledger row, the latest open charge of another period, the card
report), read here for a thousand subscriptions per statement and without locks: the
forecast writes nothing the run depends on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Connection

from domain.billing import CardReport
from domain.charges import Charge, ChargeState, ChargeTarget
from domain.forecast_model import ClubChangeTaking, Inputs, Line
from repositories.charges import _COLUMNS, schedule_of

_CHARGE_COLUMNS = [c.strip() for c in _COLUMNS.split(",")]

# The rule of repositories/status_rule.py for each subscription of the chunk, with the
# counting row's date and details (a return from pause is visible there).
_TARGETS = text(
    """
    SELECT s.id, s.customer_store_id, c.store_sku, cur.status_id, club.club_status_id,
           bs.interval, bs.anniversary, s.create_date, s.club_id,
           cur.effect_date AS since, cur.details AS since_details, prev.status_id AS before
    FROM subscription s
    LEFT JOIN club c ON c.id = s.club_id
    LEFT JOIN billing_schedule bs ON bs.club_id = s.club_id
    LEFT JOIN LATERAL (
        SELECT h.status_id, h.effect_date, h.create_date, h.id, h.details
        FROM subscription_status_history h
        WHERE h.subscription_id = s.id AND h.effect_date <= :at
        ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC LIMIT 1
    ) cur ON true
    LEFT JOIN LATERAL (
        SELECT h.status_id
        FROM subscription_status_history h
        WHERE h.subscription_id = s.id AND h.effect_date <= :at
          AND (h.effect_date, h.create_date, h.id)
              IS DISTINCT FROM (cur.effect_date, cur.create_date, cur.id)
        ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC LIMIT 1
    ) prev ON true
    LEFT JOIN LATERAL (
        SELECT h.club_status_id
        FROM club_status_history h
        WHERE h.club_id = s.club_id AND h.effect_date <= :at
        ORDER BY h.effect_date DESC, h.create_date DESC NULLS LAST, h.id DESC LIMIT 1
    ) club ON true
    WHERE s.id = ANY(CAST(:ids AS varchar[]))
    """
)

# The ids of a chunk as one array (an IN list of a thousand values costs more to send,
# parse and plan than the lookup itself).
_LEDGER = text(
    f"SELECT {_COLUMNS} FROM charge WHERE subscription_id = ANY(CAST(:ids AS varchar[]))"
)

_CARDS = text(
    "SELECT customer_store_id, reason, reported_at FROM card_unavailable"
    " WHERE customer_store_id = ANY(CAST(:ids AS varchar[]))"
)

# Members' club changes the run at :at acts on (domain/forecast_changes.py): not
# cancelled, in effect at :at, and either since the previous run (:since) or not yet
# recorded by any run. Both subscriptions' clubs, SKUs, schedules and anchors; the old
# one's unpaid periods (what the sweep abandons). The partial indexes of revision 0009.
_CLUB_CHANGES = text(
    """
    SELECT cc.id, cc.subscription_id, cc.club_id, cc.target_subscription_id,
           cc.target_club_id, cc.effective_at, cc.reactivated,
           cc.applied_recorded_at IS NULL AS unrecorded,
           oc.store_sku AS sku, tc.store_sku AS target_sku,
           s.create_date AS started, t.create_date AS target_started,
           obs.interval AS o_interval, obs.anniversary AS o_anniversary,
           obs.changed_at AS o_changed_at, obs.previous_interval AS o_previous_interval,
           obs.previous_anniversary AS o_previous_anniversary,
           tbs.interval AS t_interval, tbs.anniversary AS t_anniversary,
           tbs.changed_at AS t_changed_at, tbs.previous_interval AS t_previous_interval,
           tbs.previous_anniversary AS t_previous_anniversary,
           ARRAY(SELECT ch.period FROM charge ch WHERE ch.subscription_id = cc.subscription_id
                 AND ch.state IN ('failed', 'error') ORDER BY ch.period) AS unpaid
    FROM club_change cc
    LEFT JOIN subscription s ON s.id = cc.subscription_id
    LEFT JOIN subscription t ON t.id = cc.target_subscription_id
    LEFT JOIN club oc ON oc.id = cc.club_id
    LEFT JOIN club tc ON tc.id = cc.target_club_id
    LEFT JOIN billing_schedule obs ON obs.club_id = cc.club_id
    LEFT JOIN billing_schedule tbs ON tbs.club_id = cc.target_club_id
    WHERE cc.state = 'scheduled' AND cc.effective_at <= :at
      AND (cc.effective_at > :since OR cc.applied_recorded_at IS NULL)
    ORDER BY cc.effective_at, cc.id
    """
)

# Details are kept five weeks (a million rows a day); the per-club summaries stay.
KEEP_DETAILS_DAYS = 35
_DELETE = text(
    "DELETE FROM billing_forecast WHERE run_at = :run_at"
    " OR run_at < CAST(:run_at AS timestamp) - make_interval(days => :keep)"
)
_DELETE_RUN = text("DELETE FROM billing_forecast_run WHERE run_at = :run_at")
# Lines go in 5,000 at a time, one array per column: a million lines in seconds, where
# one INSERT per line (batched by the driver) took over half a minute.
_INSERT = text(
    "INSERT INTO billing_forecast (run_at, subscription_id, club_id, sku, period, action,"
    " attempt, max_attempts, reason) SELECT :run_at, * FROM unnest("
    "CAST(:subscription_id AS varchar[]), CAST(:club_id AS integer[]),"
    " CAST(:sku AS integer[]), CAST(:period AS varchar[]), CAST(:action AS varchar[]),"
    " CAST(:attempt AS integer[]), CAST(:max_attempts AS integer[]), CAST(:reason AS text[]))"
)
_LINE_COLUMNS = (
    "subscription_id",
    "club_id",
    "sku",
    "period",
    "action",
    "attempt",
    "max_attempts",
    "reason",
)
_INSERT_RUN = text(
    "INSERT INTO billing_forecast_run (run_at, computed_at, summary)"
    " VALUES (:run_at, :computed_at, CAST(:summary AS jsonb))"
)


def _charge(row: Any) -> Charge:
    values = {name: getattr(row, name) for name in _CHARGE_COLUMNS}
    values["state"] = ChargeState(values["state"])
    return Charge(**values)


_SCHEDULE_COLUMNS = (
    "interval",
    "anniversary",
    "changed_at",
    "previous_interval",
    "previous_anniversary",
)


def _schedule(row, prefix: str):
    """The schedule of one side of a club change (`o_`: the old club, `t_`: the target)."""
    return schedule_of(*(getattr(row, f"{prefix}_{column}") for column in _SCHEDULE_COLUMNS))


class SqlAlchemyForecastRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def inputs(self, subscription_ids: Sequence[str], at: datetime) -> dict[str, Inputs]:
        """What the forecast reports beside the plan's decision, per subscription at `at`:
        its charge target and its ledger rows by period."""
        if not subscription_ids:
            return {}
        ids = list(subscription_ids)
        ledgers: dict[str, dict[str, Charge]] = {}
        for row in self.connection.execute(_LEDGER, {"ids": ids}):
            charge = _charge(row)
            ledgers.setdefault(charge.subscription_id, {})[charge.period] = charge
        found: dict[str, Inputs] = {}
        customers: dict[str, list[str]] = {}
        for row in self.connection.execute(_TARGETS, {"ids": ids, "at": at}):
            target = ChargeTarget(
                row.id,
                row.customer_store_id,
                row.store_sku,
                row.status_id,
                row.club_status_id,
                schedule_of(row.interval, row.anniversary),
                row.create_date,
            )
            found[row.id] = Inputs(
                target,
                ledgers.get(row.id, {}),
                None,
                row.club_id,
                row.since,
                row.since_details,
                row.before,
            )
            if row.customer_store_id:
                customers.setdefault(row.customer_store_id, []).append(row.id)
        if customers:
            for row in self.connection.execute(_CARDS, {"ids": list(customers)}):
                report = CardReport(row.customer_store_id, row.reason, row.reported_at)
                for subscription_id in customers[row.customer_store_id]:
                    found[subscription_id] = found[subscription_id].with_card(report)
        return found

    def club_changes(self, at: datetime, since: datetime) -> list[ClubChangeTaking]:
        """Members' club changes the run at `at` acts on (see _CLUB_CHANGES)."""
        found = []
        for row in self.connection.execute(_CLUB_CHANGES, {"at": at, "since": since}):
            found.append(
                ClubChangeTaking(
                    id=row.id,
                    subscription_id=row.subscription_id,
                    club_id=row.club_id,
                    sku=row.sku,
                    schedule=_schedule(row, "o"),
                    started=row.started,
                    target_subscription_id=row.target_subscription_id,
                    target_club_id=row.target_club_id,
                    target_sku=row.target_sku,
                    target_schedule=_schedule(row, "t"),
                    target_started=row.target_started,
                    effective_at=row.effective_at,
                    reactivated=bool(row.reactivated),
                    unrecorded=bool(row.unrecorded),
                    unpaid=tuple(row.unpaid or ()),
                )
            )
        return found

    def store(
        self, run_at: datetime, computed_at: datetime, summary: Any, lines: Sequence[Line]
    ) -> None:
        """Replace the stored forecast of `run_at` (a later computation wins)."""
        self.connection.execute(_DELETE, {"run_at": run_at, "keep": KEEP_DETAILS_DAYS})
        self.connection.execute(_DELETE_RUN, {"run_at": run_at})
        self.connection.execute(
            _INSERT_RUN,
            {
                "run_at": run_at,
                "computed_at": computed_at,
                "summary": orjson.dumps(summary).decode(),
            },
        )
        for start in range(0, len(lines), 5000):
            chunk = lines[start : start + 5000]
            columns = {name: [getattr(line, name) for line in chunk] for name in _LINE_COLUMNS}
            self.connection.execute(_INSERT, {"run_at": run_at, **columns})

    def stored(self, run_at: datetime) -> dict[str, Any] | None:
        row = self.connection.execute(
            text(
                "SELECT computed_at, summary, compared_at, comparison FROM billing_forecast_run"
                " WHERE run_at = :run_at"
            ),
            {"run_at": run_at},
        ).first()
        return dict(row._mapping) if row else None

    def excluded(self, at: datetime) -> list[tuple[int | None, int | None, str, int]]:
        """(club, SKU, why, how many) of the subscriptions not eligible at `at`, as
        subscription_now gives them."""
        self.connection.execute(
            text("SELECT set_config('ops.at', :at, true)"), {"at": at.isoformat(sep=" ")}
        )
        rows = self.connection.execute(
            text(
                "SELECT club_id, sku, not_eligible_because, count(*) FROM subscription_now"
                " WHERE NOT eligible GROUP BY 1, 2, 3"
            )
        )
        return [tuple(row) for row in rows]

    def next_run_after(self, run_at: datetime) -> datetime | None:
        return self.connection.scalar(
            text("SELECT min(run_at) FROM billing_forecast_run WHERE run_at > :run_at"),
            {"run_at": run_at},
        )

    def page(
        self, run_at: datetime, club_id: int | None, after: str | None, limit: int
    ) -> list[Line]:
        """The lines of `limit` subscriptions after `after` (all of each one's periods)."""
        rows = self.connection.execute(
            text(
                "WITH page AS (SELECT DISTINCT subscription_id FROM billing_forecast"
                " WHERE run_at = :run_at"
                " AND (CAST(:club_id AS integer) IS NULL OR club_id = :club_id)"
                " AND (CAST(:after AS varchar) IS NULL OR subscription_id > :after)"
                " ORDER BY subscription_id LIMIT :limit)"
                " SELECT f.subscription_id, club_id, sku, period, action, attempt, max_attempts,"
                " reason FROM billing_forecast f JOIN page USING (subscription_id)"
                " WHERE run_at = :run_at ORDER BY f.subscription_id, period"
            ),
            {"run_at": run_at, "club_id": club_id, "after": after, "limit": limit},
        )
        return [Line.from_row(row._mapping) for row in rows]

    def lines(self, run_at: datetime) -> list[Line]:
        rows = self.connection.execute(
            text(
                "SELECT subscription_id, club_id, sku, period, action, attempt, max_attempts,"
                " reason FROM billing_forecast WHERE run_at = :run_at"
            ),
            {"run_at": run_at},
        )
        return [Line.from_row(row._mapping) for row in rows]

    def actual(self, since: datetime, until: datetime) -> list[tuple[str, str, str, int]]:
        """(subscription, period, audit action, attempt) the billing run wrote in [since,
        until): its charge attempts, its cancellations and those its breaker held. A
        cancellation an operator released (then carried out by the worker, audited as
        the run's) is the operator's doing, not the run's."""
        rows = self.connection.execute(
            text(
                "SELECT a.subscription_id, a.period, a.action, a.details FROM billing_audit a"
                " WHERE a.actor = 'billing-run'"
                " AND a.action IN ('charge_attempt', 'cancellation', 'cancellation_held')"
                " AND a.occurred_at >= :since AND a.occurred_at < :until"
                " AND NOT (a.action = 'cancellation' AND EXISTS (SELECT 1 FROM billing_audit r"
                "  WHERE r.action = 'cancellation_released' AND r.subscription_id ="
                "  a.subscription_id AND r.period = a.period AND r.occurred_at <= a.occurred_at"
                "  AND r.occurred_at >= :since))"
            ),
            {"since": since, "until": until},
        )
        found = []
        for row in rows:
            attempt = 0
            if row.action == "charge_attempt" and (row.details or "").startswith("attempt "):
                attempt = int(row.details.split()[1])
            found.append((row.subscription_id, row.period, row.action, attempt))
        return found

    def record_comparison(self, run_at: datetime, compared_at: datetime, comparison: Any) -> None:
        self.connection.execute(
            text(
                "UPDATE billing_forecast_run SET compared_at = :compared_at,"
                " comparison = CAST(:comparison AS jsonb) WHERE run_at = :run_at"
            ),
            {
                "run_at": run_at,
                "compared_at": compared_at,
                "comparison": orjson.dumps(comparison).decode(),
            },
        )
