"""The operators' desk at the terminal: what its commands share to read arguments, ask for
confirmation and print a table or JSON (ops/__main__.py)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

from common import settings


class Refused(Exception):
    """The operator did not confirm, or the input cannot be acted on."""


def instant(value: str) -> datetime:
    """An ISO instant; one with an offset is converted to naive UTC, as the tables store."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO instant: {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


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


def show(args: argparse.Namespace, out: TextIO, data: Any, text_: str) -> None:
    if args.json:
        out.write(json.dumps(data, default=str, indent=2) + "\n")
    else:
        out.write(text_ + "\n")


def windows() -> tuple[timedelta, timedelta]:
    config = settings.get()
    return (
        timedelta(seconds=config.charge_pending_timeout_seconds),
        timedelta(days=config.billing_retry_days),
    )
