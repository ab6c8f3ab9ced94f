"""The operators' desk: the commands that move money or membership (`charge`, `reconcile`,
`release-cancellations`, `waive`, `undo-cancellation`) and the sandboxed simulation
(`simulate`). Each write asks for confirmation and is audited with the operator's name."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from common import clock, settings
from domain import cancellation_breaker, operations
from ops.console import Refused, confirm, operator_name, show, table, windows
from repositories.unit_of_work import SqlAlchemyUnitOfWork


def cmd_charge(args, stdin, out) -> int:
    from handlers.charge import platform

    who = operator_name(args)
    confirm(args, f"charge the current period of {args.subscription_id} now", stdin, out)
    pending_timeout, _ = windows()
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
    show(args, out, row, table([row]))
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
        show(args, out, row, table([row]))
        return 0
    confirm(
        args, "reconcile the ledger with the platform's orders (settles unknown rows)", stdin, out
    )
    pending_timeout, _ = windows()
    from handlers.reconcile import platform as reconcile_platform

    report = operations.reconcile(
        SqlAlchemyUnitOfWork(), reconcile_platform(), who, clock.now(), pending_timeout
    )
    show(args, out, report.to_dict(), report.to_table())
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
        show(args, out, rows, table(rows, ["subscription_id", "period", "reason"]))
        return 0
    who = operator_name(args)
    confirm(args, f"release {len(held)} held cancellation(s) and carry them out", stdin, out)
    pending_timeout, retry_window = windows()
    done = operations.release_cancellations(
        SqlAlchemyUnitOfWork, _platform, who, clock.now, pending_timeout, retry_window
    )
    rows = [{**_held_row(m), "outcome": outcome.value} for m, outcome in done]
    show(args, out, rows, table(rows, ["subscription_id", "period", "outcome", "reason"]))
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
    show(args, out, row, table([row]))
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
    show(args, out, row, table([row]))
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
    pending_timeout, retry_window = windows()
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
    show(args, out, data, text_)
    return 0 if report.double_charges == 0 else 3
