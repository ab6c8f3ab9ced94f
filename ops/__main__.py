"""The operators' desk: `python -m ops <command>` (or `make ops ARGS="<command>"`).

    clubs                                   every club: status now, since, next change
    club create NAME --sku N [--open]       a new club (opened now with --open)
    club open|close|deactivate ID [--at T]  a club status history row, effective T (now)
    member ID                               a subscription (or a customer's) and its timeline
    forecast [--at T] [--club ID] [--store] what the daily run at T will do (next run)
    charge SUBSCRIPTION                     charge its current period now, as the run would
    simulate --from DAY --months N [--scenario FILE] [--source URL] [--keep]
    reconcile [--resolve ANOMALY --note TEXT]
                                            the platform's orders against the ledger, or
                                            close an anomaly (docs/money-path.md)
    release-cancellations [--list]          release what the billing breaker held
    waive SUBSCRIPTION PERIOD --reason TEXT close a declined/error period, cancel nobody
    undo-cancellation SUBSCRIPTION --reason TEXT
                                            restore a member billing cancelled (ACTIVE now)

The database is DATABASE_URL, else the local embedded one (`make db-url`). Every
command prints a readable table, or JSON with --json. Every write asks for confirmation
unless --yes, and is audited (billing_audit) with the operator's name: --as NAME, else
the OS user.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from common import clock, settings
from domain import cancellation_breaker, errors, forecast, forecast_runs, operations
from domain.model import ClubStatus
from repositories.unit_of_work import SqlAlchemyUnitOfWork

CLUB_ACTIONS = {"open": ClubStatus.ACTIVE, "close": ClubStatus.CLOSED}
CLUB_ACTIONS["deactivate"] = ClubStatus.INACTIVE


class Refused(Exception):
    """The operator did not confirm, or the input cannot be acted on."""


def _instant(value: str) -> datetime:
    """An ISO instant; one with an offset is converted to naive UTC, as the tables store."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO instant: {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    common.add_argument("--as", dest="operator", help="the operator's name for the audit")
    top = argparse.ArgumentParser(
        prog="ops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True)

    clubs = commands.add_parser("clubs", parents=[common], help="every club and its status")
    clubs.add_argument("--at", type=_instant, help="as at this instant (default now)")

    club = commands.add_parser("club", parents=[common], help="create, open, close a club")
    club.add_argument("action", choices=["create", *CLUB_ACTIONS])
    club.add_argument("target", help="the club id (create: its name)")
    club.add_argument("--at", type=_instant, help="effective at this instant (default now)")
    club.add_argument("--details", help="the history row's details")
    club.add_argument("--sku", type=int, help="create: the store SKU")
    club.add_argument("--open", action="store_true", help="create: open it now")

    member = commands.add_parser("member", parents=[common], help="a member's timeline")
    member.add_argument("id", help="a subscription id or a customer (store) id")
    member.add_argument("--at", type=_instant, help="as at this instant (default now)")

    fc = commands.add_parser("forecast", parents=[common], help="what the daily run will do")
    fc.add_argument("--at", type=_instant, help="the run's instant (default the next run)")
    fc.add_argument("--club", type=int, help="only this club's details")
    fc.add_argument("--details", action="store_true", help="list every subscription")
    fc.add_argument("--store", action="store_true", help="store it for the endpoint")

    charge = commands.add_parser("charge", parents=[common], help="charge a period now")
    charge.add_argument("subscription_id")

    rec = commands.add_parser("reconcile", parents=[common], help="orders against the ledger")
    rec.add_argument("--resolve", type=int, help="close the anomaly with this id")
    rec.add_argument("--note", help="--resolve: what was done (e.g. 'refunded order X')")

    rel = commands.add_parser(
        "release-cancellations", parents=[common], help="release what the breaker held"
    )
    rel.add_argument("--list", action="store_true", help="only list the held cancellations")

    waive = commands.add_parser("waive", parents=[common], help="waive an unpaid period")
    waive.add_argument("subscription_id")
    waive.add_argument("period", help="the period key, e.g. 2026-11")
    waive.add_argument("--reason", required=True, help="why (kept in the audit)")

    undo = commands.add_parser(
        "undo-cancellation", parents=[common], help="restore a member billing cancelled"
    )
    undo.add_argument("subscription_id")
    undo.add_argument("--reason", required=True, help="why (kept in the audit)")

    sim = commands.add_parser("simulate", parents=[common], help="months of billing, sandboxed")
    sim.add_argument("--from", dest="start", type=_day, required=True)
    sim.add_argument("--months", type=int, default=6)
    sim.add_argument("--scenario", help="a JSON or YAML scenario file")
    sim.add_argument("--source", help="the database to copy (default: DATABASE_URL)")
    sim.add_argument("--sandbox", help="simulate in this existing sandbox instead of a copy")
    sim.add_argument("--keep", action="store_true", help="keep the sandbox afterwards")
    sim.add_argument("--plot", help="write a PNG of the monthly report here")
    return top


def operator_name(args: argparse.Namespace) -> str:
    return args.operator or os.environ.get("OPS_OPERATOR") or getpass.getuser()


def confirm(args: argparse.Namespace, question: str, stdin: TextIO, out: TextIO) -> None:
    if args.yes:
        return
    if not stdin.isatty():
        raise Refused(f"{question}: not confirmed (add --yes when not at a terminal)")
    out.write(f"{question} [y/N] ")
    out.flush()
    if stdin.readline().strip().lower() not in ("y", "yes"):
        raise Refused("cancelled")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _print(args: argparse.Namespace, out: TextIO, data: Any, text_: str) -> None:
    if args.json:
        out.write(json.dumps(data, default=str, indent=2) + "\n")
    else:
        out.write(text_ + "\n")


def _config() -> tuple[timedelta, timedelta]:
    config = settings.get()
    return (
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
    )


CLUB_COLUMNS = ["club_id", "club", "sku", "status", "since", "next_status", "next_change_at"]


def cmd_clubs(args, stdin, out) -> int:
    rows = operations.clubs(SqlAlchemyUnitOfWork(), args.at or clock.now())
    _print(args, out, rows, table(rows, CLUB_COLUMNS))
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
        _print(args, out, rows[0], table(rows, CLUB_COLUMNS))
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
    _print(args, out, row, table([row], CLUB_COLUMNS))
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
        _print(args, out, found, "")
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
    pending_timeout, retry_window = _config()
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
    _print(args, out, data, text_)
    return 0


def cmd_charge(args, stdin, out) -> int:
    from handlers.charge import platform

    who = operator_name(args)
    confirm(args, f"charge the current period of {args.subscription_id} now", stdin, out)
    pending_timeout, _ = _config()
    result = operations.charge_now(
        SqlAlchemyUnitOfWork(), platform(), args.subscription_id, who, clock.now, pending_timeout
    )
    row = {
        "subscription_id": result.charge.subscription_id,
        "period": result.charge.period,
        "state": result.charge.state.value,
        "attempts": result.charge.attempts,
        "request_id": result.charge.request_id,
        "platform_status": None if result.answer is None else result.answer.status,
        "replayed": result.replayed,
    }
    _print(args, out, row, table([row]))
    return 0


def _platform():
    from handlers.charge import platform

    return platform()


def cmd_reconcile(args, stdin, out) -> int:
    who = operator_name(args)
    if args.resolve is not None:
        if not args.note:
            raise Refused("--resolve needs --note saying what was done")
        confirm(args, f"close anomaly {args.resolve} ({args.note})", stdin, out)
        done = operations.resolve_anomaly(
            SqlAlchemyUnitOfWork(), args.resolve, args.note, who, clock.now()
        )
        if not done:
            raise Refused(f"anomaly {args.resolve} not found or already resolved")
        row = {"anomaly": args.resolve, "resolved": True, "by": who}
        _print(args, out, row, table([row]))
        return 0
    confirm(
        args, "reconcile the ledger with the platform's orders (settles unknown rows)", stdin, out
    )
    pending_timeout, _ = _config()
    from handlers.reconcile import platform as reconcile_platform

    report = operations.reconcile(
        SqlAlchemyUnitOfWork(), reconcile_platform(), who, clock.now(), pending_timeout
    )
    _print(args, out, report.to_dict(), report.to_table())
    return 0 if report.clean else 4


def _held_row(message) -> dict[str, Any]:
    return {
        "subscription_id": message.subscription_id,
        "period": message.period,
        "reason": message.reason,
    }


def cmd_release_cancellations(args, stdin, out) -> int:
    held = cancellation_breaker.held(SqlAlchemyUnitOfWork())
    if args.list or not held:
        rows = [_held_row(m) for m in held]
        _print(args, out, rows, table(rows, ["subscription_id", "period", "reason"]))
        return 0
    who = operator_name(args)
    confirm(args, f"release {len(held)} held cancellation(s) and carry them out", stdin, out)
    pending_timeout, retry_window = _config()
    done = operations.release_cancellations(
        SqlAlchemyUnitOfWork, _platform, who, clock.now, pending_timeout, retry_window
    )
    rows = [{**_held_row(m), "outcome": outcome.value} for m, outcome in done]
    _print(args, out, rows, table(rows, ["subscription_id", "period", "outcome", "reason"]))
    return 0


def cmd_waive(args, stdin, out) -> int:
    who = operator_name(args)
    confirm(
        args,
        f"waive period {args.period} of {args.subscription_id} (nobody is cancelled)",
        stdin,
        out,
    )
    closed = operations.waive(
        SqlAlchemyUnitOfWork(), args.subscription_id, args.period, args.reason, who, clock.now()
    )
    row = {
        "subscription_id": closed.subscription_id,
        "period": closed.period,
        "state": closed.state.value,
        "attempts": closed.attempts,
        "reason": closed.failure_reason,
    }
    _print(args, out, row, table([row]))
    return 0


def cmd_undo_cancellation(args, stdin, out) -> int:
    who = operator_name(args)
    confirm(args, f"restore {args.subscription_id} (ACTIVE from now)", stdin, out)
    changes = operations.undo_cancellation(
        SqlAlchemyUnitOfWork(), args.subscription_id, args.reason, who, clock.now()
    )
    row = {
        "subscription_id": args.subscription_id,
        "status": "ACTIVE",
        "effect_date": changes[0].effect_date.isoformat(sep=" "),
        "history_row": changes[0].id,
    }
    _print(args, out, row, table([row]))
    return 0


MONTH_COLUMNS = [
    "month",
    "charged",
    "retried",
    "refused",
    "platform_errors",
    "cancelled",
    "held",
    "club_changes",
    "webhooks",
    "duplicate_webhooks",
    "forecast_agreed",
    "units_per_sku",
    "double_charges",
]


def cmd_simulate(args, stdin, out) -> int:
    from ops import simulation

    scenario = simulation.Scenario.load(args.scenario)
    if args.months < 1:
        raise Refused("--months must be at least 1")
    created = False
    if args.sandbox:
        url = args.sandbox
        simulation.require_sandbox(url)
    else:
        source = args.source or settings.get().resolved_database_url()
        url = simulation.copy(source)
        created = True
    pending_timeout, retry_window = _config()
    try:
        report = simulation.simulate(
            url,
            args.start,
            args.months,
            scenario,
            pending_timeout,
            retry_window,
            out=None if args.json else sys.stderr,
        )
    finally:
        if created and not args.keep:
            simulation.drop(url)
    data = report.to_dict()
    data["sandbox"] = make_url(url).database if args.keep or not created else None
    rows = [{"month": key, **month.to_dict()} for key, month in report.months.items()]
    for row in rows:
        row["forecast_agreed"] = f"{row['forecast_agreed']}/{row['forecast_runs']}"
    text_ = table(rows, MONTH_COLUMNS)
    text_ += f"\n{report.days} days in {report.seconds:.1f} s; double charges: "
    text_ += f"{report.double_charges}"
    if data["sandbox"]:
        text_ += f"; sandbox kept: {data['sandbox']}"
    if args.plot:
        try:
            data["plot"] = str(simulation.plot(report, Path(args.plot)))
            text_ += f"\nplot: {data['plot']}"
        except ImportError:
            text_ += "\nno plot: matplotlib is missing (pip install -r requirements-bench.txt)"
    _print(args, out, data, text_)
    return 0 if report.double_charges == 0 else 3


COMMANDS = {
    "clubs": cmd_clubs,
    "club": cmd_club,
    "member": cmd_member,
    "forecast": cmd_forecast,
    "charge": cmd_charge,
    "simulate": cmd_simulate,
    "reconcile": cmd_reconcile,
    "release-cancellations": cmd_release_cancellations,
    "waive": cmd_waive,
    "undo-cancellation": cmd_undo_cancellation,
}


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout):
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, stdin, out)
    except Refused as exc:
        print(f"ops: {exc}", file=sys.stderr)
        return 1
    except errors.DomainError as exc:
        print(f"ops: {exc.message}", file=sys.stderr)
        return 2
    except Exception as exc:
        from ops import simulation

        if isinstance(exc, simulation.NotASandbox):
            print(f"ops: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
