"""A scenario's events of one simulated day (ops/scenario.py reads them from its file),
written the way the API, the platform's webhooks and operators write them.

At 05:00 of the day, before its webhooks and its run: members paused
(`subscriptions.change_status`), card reports (queued as the platform's webhooks), clubs
opened or closed (`operations.change_club_status`, as `ops club` does), members moved to
another club (`club_changes.request_change`, as `POST /subscription/{id}/club-change/`
does), and the cancellations the breaker held released by an operator
(`cancellation_breaker.release_held`, then the worker's `settlement.settle`, as
`ops release-cancellations` does).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import text

from common import clock
from domain import billing, club_changes, errors, operations, subscriptions
from domain.club_change_model import ChangeRequest, When
from domain.model import ClubStatus, SubscriptionStatus
from domain.ports import Ecommerce
from domain.webhooks import EventType, PlatformEvent
from ops.scenario import Scenario
from repositories.unit_of_work import SqlAlchemyUnitOfWork

EVENTS_AT = time(5, 0)
OPERATOR = "simulation"


@dataclass
class DayEvents:
    """What the day's events did (the report counts them)."""

    # Card-unavailable webhooks to deliver at `due` (the platform's outbox).
    card_reports: list[PlatformEvent] = field(default_factory=list)
    club_changes_scheduled: int = 0
    club_changes_refused: int = 0
    # "now" changes take effect as they are written (the run records next_period ones).
    club_changes_applied: int = 0
    # Cancellations an operator released and the worker carried out.
    released: int = 0


def populate(scenario: Scenario, at: datetime) -> None:
    """Clubs and subscriptions the scenario asks for, created as of `at`."""
    if not scenario.clubs and not scenario.subscriptions:
        return
    with SqlAlchemyUnitOfWork() as uow:
        conn = uow.connection
        club_ids = []
        for n in range(max(scenario.clubs, 1)):
            club_id = conn.scalar(
                text("INSERT INTO club (name, store_sku) VALUES (:n, :sku) RETURNING id"),
                {"n": f"Simulated club {n + 1}", "sku": 9000 + n},
            )
            conn.execute(
                text(
                    "INSERT INTO club_status_history"
                    " (id, club_id, club_status_id, effect_date, create_date, details)"
                    " VALUES (:id, :club, 1, :at, :at, 'opened by the simulation')"
                ),
                {"id": str(uuid.uuid4()), "club": club_id, "at": at - timedelta(days=30)},
            )
            club_ids.append(club_id)
        # Members as plain SQL writes them (the data model's own way), a statement each.
        conn.execute(
            text(
                "INSERT INTO subscription (id, club_id, customer_store_id, create_date)"
                " SELECT 'sim-' || lpad(n::text, 7, '0'), (:clubs)[1 + n % cardinality(:clubs)],"
                " 'sim-customer-' || lpad(n::text, 7, '0'),"
                " CAST(:at AS timestamp) - make_interval(days => 1 + n % 20)"
                " FROM generate_series(0, :count - 1) n"
            ),
            {"clubs": club_ids, "at": at, "count": scenario.subscriptions},
        )
        conn.execute(
            text(
                "INSERT INTO subscription_status_history"
                " (id, subscription_id, status_id, effect_date, create_date, details)"
                " SELECT gen_random_uuid()::text, id, 1, create_date, create_date,"
                " 'Subscription created' FROM subscription WHERE id LIKE 'sim-%'"
            )
        )
        uow.commit()
    with SqlAlchemyUnitOfWork() as uow:
        uow.connection.execute(text("SELECT subscription_current_status_absorb()"))
        uow.commit()


def candidates(
    at: datetime,
    count: int,
    rng: random.Random,
    club_id: int | None = None,
    not_club: int | None = None,
) -> list[tuple[str, str]]:
    """(subscription, customer) of `count` random members the run would charge at `at`,
    of `club_id` only, or of any club but `not_club`."""
    ids = subscriptions.eligible_ids(SqlAlchemyUnitOfWork(), at)
    with SqlAlchemyUnitOfWork() as uow:
        rows = uow.connection.execute(
            text(
                "SELECT id, customer_store_id FROM subscription WHERE id = ANY(:ids)"
                " AND (CAST(:club AS integer) IS NULL OR club_id = :club)"
                " AND (CAST(:not_club AS integer) IS NULL OR club_id IS DISTINCT FROM :not_club)"
                " ORDER BY id"
            ),
            {"ids": ids, "club": club_id, "not_club": not_club},
        )
        found = [(row.id, row.customer_store_id) for row in rows]
    return sorted(rng.sample(found, min(count, len(found))))


def happen(
    scenario: Scenario,
    day: date,
    rng: random.Random,
    platform: Ecommerce,
    windows: tuple[timedelta, timedelta],
) -> DayEvents:
    """The scenario's events of `day`, at 05:00 (the clock is set by the caller)."""
    at = datetime.combine(day, EVENTS_AT)
    done = DayEvents()
    for pause in (p for p in scenario.pauses if p["day"] == day):
        for subscription_id, _ in candidates(at, int(pause.get("count", 1)), rng):
            subscriptions.change_status(
                SqlAlchemyUnitOfWork(),
                subscription_id,
                SubscriptionStatus.PAUSED,
                at,
                interval_days=int(pause.get("days", 30)),
                details="paused by the simulation",
            )
    for report in (r for r in scenario.card_reports if r["day"] == day):
        for _, customer in candidates(at, int(report.get("count", 1)), rng):
            done.card_reports.append(
                PlatformEvent(
                    f"evt_card_{uuid.UUID(int=rng.getrandbits(128)).hex}",
                    EventType.CARD_UNAVAILABLE,
                    customer_id=customer,
                    reason=report.get("reason", "expired"),
                    occurred_at=at,
                )
            )
    for change in (c for c in scenario.club_statuses if c["day"] == day):
        operations.change_club_status(
            SqlAlchemyUnitOfWork(),
            _club_id(change["club_id"]),
            ClubStatus[str(change["status"]).upper()],
            OPERATOR,
            at,
        )
    for move in (m for m in scenario.club_changes if m["day"] == day):
        _move(move, at, rng, done)
    if day in scenario.releases:
        done.released = _release(platform, windows)
    return done


def _move(move: dict, at: datetime, rng: random.Random, done: DayEvents) -> None:
    """Members moved to another club, each by the club-change endpoint's own function."""
    to_club = _club_id(move["to_club"])
    from_club = _club_id(move["from_club"]) if move.get("from_club") is not None else None
    when = When(move.get("when", When.NEXT_PERIOD.value))
    count = int(move.get("count", 1))
    for subscription_id, _ in candidates(at, count, rng, from_club, not_club=to_club):
        try:
            outcome = club_changes.request_change(
                SqlAlchemyUnitOfWork(), ChangeRequest(subscription_id, to_club, when), at
            )
        except errors.DomainError:
            # Refused as the endpoint would refuse it (a scheduled pause, already a
            # member there, a target club not open...): the scenario goes on.
            done.club_changes_refused += 1
            continue
        done.club_changes_scheduled += 1
        if outcome.change.effective_at <= at:
            done.club_changes_applied += 1


def _club_id(club: int | str) -> int:
    """A club by id, or by name ("Simulated club 2": the same whatever the copy holds)."""
    if isinstance(club, int):
        return club
    with SqlAlchemyUnitOfWork() as uow:
        found = uow.connection.scalar(
            text("SELECT min(id) FROM club WHERE name = :name"), {"name": club}
        )
    if found is None:
        raise ValueError(f"the scenario names a club that does not exist: {club!r}")
    return found


def _release(platform: Ecommerce, windows: tuple[timedelta, timedelta]) -> int:
    """An operator releases what the breaker holds, as `ops release` does
    (`operations.release_cancellations`: each carried out by the worker's rules, re-read
    under lock, so only what is still due cancels anyone), at the simulated clock's
    instant. How many it cancelled."""
    released = operations.release_cancellations(
        SqlAlchemyUnitOfWork, lambda: platform, OPERATOR, clock.now, *windows
    )
    return sum(outcome == billing.Outcome.CANCELLED for _, outcome in released)
