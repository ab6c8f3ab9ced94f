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
import sys
from typing import TextIO

from domain import errors
from ops import catalog_commands as catalog
from ops import money_commands as money
from ops.catalog_commands import CLUB_ACTIONS
from ops.console import Refused, day, instant


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
    clubs.add_argument("--at", type=instant, help="as at this instant (default now)")

    club = commands.add_parser("club", parents=[common], help="create, open, close a club")
    club.add_argument("action", choices=["create", *CLUB_ACTIONS])
    club.add_argument("target", help="the club id (create: its name)")
    club.add_argument("--at", type=instant, help="effective at this instant (default now)")
    club.add_argument("--details", help="the history row's details")
    club.add_argument("--sku", type=int, help="create: the store SKU")
    club.add_argument("--open", action="store_true", help="create: open it now")

    member = commands.add_parser("member", parents=[common], help="a member's timeline")
    member.add_argument("id", help="a subscription id or a customer (store) id")
    member.add_argument("--at", type=instant, help="as at this instant (default now)")

    fc = commands.add_parser("forecast", parents=[common], help="what the daily run will do")
    fc.add_argument("--at", type=instant, help="the run's instant (default the next run)")
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
    sim.add_argument("--from", dest="start", type=day, required=True)
    sim.add_argument("--months", type=int, default=6)
    sim.add_argument("--scenario", help="a JSON or YAML scenario file")
    sim.add_argument("--source", help="the database to copy (default: DATABASE_URL)")
    sim.add_argument("--sandbox", help="simulate in this existing sandbox instead of a copy")
    sim.add_argument("--keep", action="store_true", help="keep the sandbox afterwards")
    sim.add_argument("--plot", help="write a PNG of the monthly report here")
    return top


COMMANDS = {
    "clubs": catalog.cmd_clubs,
    "club": catalog.cmd_club,
    "member": catalog.cmd_member,
    "forecast": catalog.cmd_forecast,
    "charge": money.cmd_charge,
    "simulate": money.cmd_simulate,
    "reconcile": money.cmd_reconcile,
    "release-cancellations": money.cmd_release_cancellations,
    "waive": money.cmd_waive,
    "undo-cancellation": money.cmd_undo_cancellation,
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
