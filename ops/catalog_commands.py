"""The operators' desk: the clubs and the members (`clubs`, `club`, `member`) and what the
next daily run will do (`forecast`)."""

from __future__ import annotations

from typing import Any

from common import clock, settings
from domain import cancellation_breaker, forecast, forecast_runs, operations
from domain.model import ClubStatus
from ops.console import Refused, confirm, operator_name, show, table, windows
from repositories.unit_of_work import SqlAlchemyUnitOfWork

CLUB_ACTIONS = {"open": ClubStatus.ACTIVE, "close": ClubStatus.CLOSED}
CLUB_ACTIONS["deactivate"] = ClubStatus.INACTIVE


CLUB_COLUMNS = ["club_id", "club", "sku", "status", "since", "next_status", "next_change_at"]


def cmd_clubs(args, stdin, out) -> int:
    rows = operations.clubs(SqlAlchemyUnitOfWork(), args.at or clock.now())
    show(args, out, rows, table(rows, CLUB_COLUMNS))
    return 0


def cmd_club(args, stdin, out) -> int:
    now = clock.now()
    who = operator_name(args)
    if args.action == "create":
        confirm(args, f"create club {args.target!r} with SKU {args.sku}", stdin, out)
        club_id = operations.create_club(SqlAlchemyUnitOfWork(), args.target, args.sku, who, now)
        if args.open:
            operations.change_club_status(
                SqlAlchemyUnitOfWork(), club_id, ClubStatus.ACTIVE, who, now, args.at
            )
        listed = operations.clubs(SqlAlchemyUnitOfWork(), now)
        rows = [r for r in listed if r["club_id"] == club_id]
        show(args, out, rows[0], table(rows, CLUB_COLUMNS))
        return 0
    try:
        club_id = int(args.target)
    except ValueError:
        raise Refused(f"a club id is a number, not {args.target!r}") from None
    status = CLUB_ACTIONS[args.action]
    when = (args.at or now).isoformat(sep=" ", timespec="minutes")
    confirm(args, f"{args.action} club {club_id} ({status.name}) from {when}", stdin, out)
    row = operations.change_club_status(
        SqlAlchemyUnitOfWork(), club_id, status, who, now, args.at, args.details
    )
    show(args, out, row, table([row], CLUB_COLUMNS))
    return 0


MEMBER_COLUMNS = [
    "subscription_id",
    "club",
    "customer_store_id",
    "status",
    "since",
    "next_status",
    "next_change_at",
    "eligible",
    "not_eligible_because",
    "current_period",
    "unpaid_periods",
]


def cmd_member(args, stdin, out) -> int:
    found = operations.member(SqlAlchemyUnitOfWork(), args.id, args.at or clock.now())
    if args.json:
        show(args, out, found, "")
        return 0
    parts = []
    for row in found:
        parts.append(table([row], MEMBER_COLUMNS))
        parts.append("")
        parts.append(
            table(row["timeline"], ["at", "recorded_at", "kind", "what", "period", "details"])
        )
        parts.append("")
    out.write("\n".join(parts))
    return 0


SUMMARY_ORDER = [
    "charge",
    "retry",
    "returns from pause",
    "club change: joins",
    "club change: leaves",
    "abandon",
    "cancel: card unavailable",
    "cancel: window closing",
    "cancel held: card unavailable",
    "cancel held: window closing",
]


def _summary_columns(summary: list[dict[str, Any]]) -> list[str]:
    """The columns some club has, the run's actions first, then the excluded."""
    present = {key for row in summary for key in row} - {"club_id", "sku"}
    known = [name for name in SUMMARY_ORDER if name in present]
    others = sorted(k for k in present - set(known) if not k.startswith("excluded"))
    excluded = sorted(k for k in present if k.startswith("excluded"))
    return ["club_id", "sku", *(known or ["charge"]), *others, *excluded]


def _breaker_line(verdict: dict[str, Any]) -> str:
    if not verdict.get("cancellations"):
        return "cancellation breaker: no cancellation due"
    said = (
        f"cancellation breaker: {verdict['cancellations']} cancellation(s) of"
        f" {verdict['due']} due, limit {verdict['limit']}: "
    )
    if verdict.get("held"):
        return said + "HELD, none carried out (review, then release-cancellations)"
    return said + "within the limit, carried out"


def cmd_forecast(args, stdin, out) -> int:
    now = clock.now()
    at = args.at or forecast.next_run(now)
    pending_timeout, retry_window = windows()
    result = forecast.compute(
        SqlAlchemyUnitOfWork(),
        SqlAlchemyUnitOfWork(),
        at,
        pending_timeout,
        retry_window,
        True,
        cancellation_breaker.Breaker.configured(settings.get()),
    )
    if args.store:
        confirm(args, f"store the forecast of the run at {at}", stdin, out)
        forecast_runs.store(SqlAlchemyUnitOfWork(), result, now)
    lines = result.lines
    if args.club is not None:
        lines = [line for line in lines if line.club_id == args.club]
    data = result.to_dict(details=True)
    data["details"] = [line.row() for line in lines]
    text_ = f"the daily run at {at:%Y-%m-%d %H:%M} UTC, assuming nothing happens before it\n"
    text_ += table(result.summary, _summary_columns(result.summary))
    settled = ", ".join(f"{k} {v}" for k, v in sorted(result.settled.items())) or "none"
    text_ += f"\nalready settled this period (nothing to do): {settled}"
    text_ += "\n" + _breaker_line(result.breaker)
    if args.details or args.club is not None:
        text_ += "\n\n" + table(
            [line.row() for line in lines],
            ["subscription_id", "club_id", "period", "action", "attempt", "max_attempts", "reason"],
        )
    show(args, out, data, text_)
    return 0
